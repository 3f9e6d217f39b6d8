// Command benchmark measures the extension against the targets the project
// holds itself to (speed and cost on a healthy Loki; the function's cost
// and the memory bound while Loki is away) and prints one table: metric,
// target, measured, met.
//
// It builds the extension as `task build` does (static, stripped, amd64 and
// arm64, each packed into a layer zip), starts a real Loki, runs the Lambda
// sandbox emulator with the extension inside for each scenario, and runs the
// per-line Go benchmark (package lifecycle's BenchmarkPipeline) on one core.
//
// Timings depend on the machine, and on what else runs on it: the table
// names the CPU, the core count, the Go version and the load average.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"
)

func main() {
	opts := options{}
	flag.BoolVar(&opts.quick, "quick", false, "fewer repetitions and smaller bursts (about a minute; figures are rougher)")
	flag.StringVar(&opts.only, "only", "", "comma-separated scenarios to run (default all): "+strings.Join(scenarioNames(), ","))
	flag.BoolVar(&opts.verbose, "v", false, "show the extension's own log and the build and go test output")
	flag.StringVar(&opts.workDir, "work", "", "keep the builds in this directory (default: a temporary one, removed at the end)")
	flag.IntVar(&opts.fleet, "fleet", 20, "sandboxes in the fleet scenario")
	flag.StringVar(&opts.baseline, "baseline", "", "also build this git revision (main, say) and show its sizes and init time beside the working tree's")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, opts, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "benchmark:", err)
		os.Exit(1)
	}
}

type options struct {
	quick    bool
	only     string
	verbose  bool
	workDir  string
	baseline string
	fleet    int
}

// run measures the chosen scenarios and writes the table to out; progress
// goes to progress.
func run(ctx context.Context, opts options, out, progress io.Writer) error {
	selected, err := selectScenarios(opts.only)
	if err != nil {
		return err
	}
	b, err := newBench(ctx, opts, progress)
	if err != nil {
		return err
	}
	defer b.close()
	for _, sc := range scenarios {
		if !selected[sc.name] {
			continue
		}
		b.step("%s: %s", sc.name, sc.what)
		if err := sc.run(ctx, b); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// One failed scenario should not hide the others' figures.
			b.add(row{metric: sc.what, target: "–", measured: "failed: " + err.Error(), met: "NO"})
		}
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, b.machine)
	fmt.Fprintln(out)
	writeTable(out, b.rows)
	if missed := b.missed(); missed > 0 {
		fmt.Fprintf(out, "\n%d of %d targets missed.\n", missed, b.judged())
	} else if b.judged() > 0 {
		fmt.Fprintf(out, "\nAll %d targets met.\n", b.judged())
	}
	return nil
}

// measurement is one scenario of the benchmark; it adds its rows to the bench.
type measurement struct {
	name, what string
	run        func(context.Context, *bench) error
}

var scenarios = []measurement{
	{"size", "binary and layer zip sizes", measureSizes},
	{"cpu", "CPU and allocations per line (go test -bench, one core)", measureCPU},
	{"init", "init: exec to first /next", measureInit},
	{"overhead", "post-runtime overhead, end mode", measureEndOverhead},
	{"adaptive", "post-runtime overhead, adaptive mode", measureAdaptiveOverhead},
	{"throughput", "throughput through the listener to Loki, one core", measureThroughput},
	{"rss", "peak RSS, 5 invokes × 20 lines", measureSmallRSS},
	{"outage", "Loki refusing, hanging, answering 429: what the function's invocations pay, what is lost", measureOutage},
	{"memory", "memory and the spill file, 200 000 lines with Loki down, every flush mode", measureMemory},
	{"first-window", "the first failing window: Loki closing connections, 500, 429, 429 with Retry-After, hanging", measureFirstWindow},
	{"fleet", "a fleet of sandboxes of one function against Loki's default limits, and an outage in the middle", measureFleet},
	{"drain", "the SHUTDOWN drain of an outage's backlog, against what Loki ingests from parallel pushers", measureDrain},
}

func scenarioNames() []string {
	var names []string
	for _, sc := range scenarios {
		names = append(names, sc.name)
	}
	return names
}

func selectScenarios(only string) (map[string]bool, error) {
	selected := map[string]bool{}
	if strings.TrimSpace(only) == "" {
		for _, name := range scenarioNames() {
			selected[name] = true
		}
		return selected, nil
	}
	known := map[string]bool{}
	for _, name := range scenarioNames() {
		known[name] = true
	}
	var unknown []string
	for _, name := range strings.Split(only, ",") {
		name = strings.TrimSpace(name)
		switch {
		case name == "":
		case known[name]:
			selected[name] = true
		default:
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("-only: unknown scenario %s; choose from %s", strings.Join(unknown, ", "), strings.Join(scenarioNames(), ","))
	}
	if len(selected) == 0 {
		return nil, errors.New("-only: no scenario named")
	}
	return selected, nil
}

// reps picks the full or the quick count of repetitions.
func (b *bench) reps(full, quick int) int {
	if b.opts.quick {
		return quick
	}
	return full
}

// ms formats a duration with a precision that suits it.
func ms(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
	default:
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
