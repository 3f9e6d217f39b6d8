package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/delivery"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/internal/runtimes"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// result is one function's run in one log format.
type result struct {
	function, format, name string
	written, readBack      int
	query                  string
	err                    error
}

// runFunctions runs each test function by its real runtime, in each log
// format, and prints what each wrote and what Loki holds of it.
func runFunctions(ctx context.Context, s setup, o options) error {
	formats := []string{"text", "json"}
	if o.format != "" {
		formats = []string{o.format}
	}
	var results []result
	for _, tf := range runtimes.Languages() {
		if o.only != "" && o.only != tf.Name {
			continue
		}
		step("building the %s function (once; cached afterwards)", tf.Name)
		fn, err := tf.Build(ctx, os.Stdout)
		if errors.Is(err, runtimes.ErrToolchainMissing) {
			results = append(results, result{function: tf.Name, format: "-", err: err})
			continue
		}
		if err != nil {
			return err
		}
		for _, format := range formats {
			results = append(results, runFunction(ctx, s, o, fn, format))
		}
	}
	printResults(results)
	for _, r := range results {
		if r.err != nil && !errors.Is(r.err, runtimes.ErrToolchainMissing) {
			return fmt.Errorf("%s (%s): %w", r.function, r.format, r.err)
		}
	}
	return nil
}

// runFunction runs one function in one format: a sandbox of its own, a few
// invocations with the freeze between them, SHUTDOWN, then the lines read
// back.
func runFunction(ctx context.Context, s setup, o options, fn runtimes.Function, format string) result {
	r := result{function: fn.Runtime, format: format, name: fmt.Sprintf("%s-%s-%s", fn.Name, format, time.Now().Format("150405"))}
	step("running %s (%s log format) with the extension, %d invocations", fn.Name, format, o.invokes)
	start := time.Now()
	sb, err := sandbox.Start(ctx, sandbox.Config{
		ExtensionsDir: s.extensionsDir, FunctionName: r.name, Runtime: &fn, LogFormat: format, LogLevel: "DEBUG",
		ActiveTracing: true, ExtensionOutput: s.output, Env: s.env(),
	})
	if err != nil {
		r.err = err
		return r
	}
	defer sb.Close()
	var written []sandbox.Line
	for i := range o.invokes {
		if i > 0 {
			time.Sleep(o.gap) // frozen: the extension is SIGSTOPped
		}
		payload, _ := json.Marshal(map[string]string{"marker": fmt.Sprintf("demo%d", i+1)})
		res, err := sb.Invoke(ctx, sandbox.Function{Payload: payload})
		if err != nil {
			r.err = err
			return r
		}
		written = append(written, res.Lines...)
	}
	if _, err := sb.Shutdown(ctx, "spindown"); err != nil {
		r.err = err
		return r
	}
	r.written = len(written)
	r.query = delivery.Selector(r.name)
	got, err := s.srv.Query(ctx, lokiserver.Query{LogQL: r.query, Start: start.Add(-time.Minute), End: time.Now().Add(time.Minute)})
	if err != nil {
		r.err = err
		return r
	}
	r.readBack = len(got)
	if d := delivery.Compare(written, got); !d.Complete() {
		r.err = fmt.Errorf("not every line arrived as written: %s", d)
	}
	showLines(got)
	return r
}

// showLines prints the lines read back, one a row.
func showLines(got []lokiserver.Line) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    TIME\tLEVEL\tREQUEST\tLINE")
	for _, l := range got {
		line := strings.NewReplacer("\t", " ", "\n", "⏎").Replace(l.Line)
		if len(line) > 100 {
			line = line[:100] + "…"
		}
		id := l.Labels["request_id"]
		if len(id) > 8 {
			id = id[:8]
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\n", l.Time.UTC().Format("15:04:05.000"), l.Labels["level"], id, line)
	}
	_ = tw.Flush()
}

// printResults prints the summary table and a query per run.
func printResults(results []result) {
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "function\tformat\twritten\tread back from Loki\tLogQL to paste in Grafana")
	for _, r := range results {
		switch {
		case errors.Is(r.err, runtimes.ErrToolchainMissing):
			fmt.Fprintf(tw, "%s\t-\t-\t-\tskipped: %v\n", r.function, r.err)
		case r.err != nil:
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\tFAILED: %v\n", r.function, r.format, r.written, r.readBack, r.err)
		default:
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", r.function, r.format, r.written, r.readBack, r.query)
		}
	}
	_ = tw.Flush()
}
