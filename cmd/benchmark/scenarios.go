package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/delivery"
	"github.com/lambda-loki/grafana-loki-extension/internal/fakeaws"
	"github.com/lambda-loki/grafana-loki-extension/internal/freeport"
	"github.com/lambda-loki/grafana-loki-extension/internal/gobuild"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/internal/scenario"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// Targets on a healthy Loki: init, the time added after runtimeDone, CPU
// per line, throughput, memory and the binary's size.
const (
	maxInitMedian        = 10 * time.Millisecond
	subscriptionTimeout  = 25 * time.Millisecond // the extension's default TELEMETRY_TIMEOUT_MS
	maxEndOverhead       = subscriptionTimeout + 10*time.Millisecond
	maxAdaptiveOverhead  = 2 * time.Millisecond
	maxNsPerLine         = 5000
	minLinesPerSecond    = 50_000
	maxSmallRSS          = 20 << 20
	maxBinaryBytes       = 8_000_000
	maxZipBytes          = 3_500_000
	extensionCPUTickRate = 100 // USER_HZ, the unit of /proc/<pid>/stat times on Linux
)

func measureSizes(ctx context.Context, b *bench) error {
	zipper := filepath.Join(b.work, "layerzip")
	if err := gobuild.Build(ctx, "./cmd/layerzip", zipper, gobuild.Options{Dir: b.root}); err != nil {
		return err
	}
	for _, arch := range archs {
		bin, err := b.binary(ctx, arch)
		if err != nil {
			return err
		}
		info, err := os.Stat(bin)
		if err != nil {
			return err
		}
		b.judge("binary, stripped, linux/"+arch, "≤ 8 MB", megabytes(info.Size()), info.Size() <= maxBinaryBytes)

		zipFile := filepath.Join(b.work, extensionName+"-"+arch+".zip")
		pack := exec.CommandContext(ctx, zipper, "-o", zipFile, "-bin", bin)
		if out, err := pack.CombinedOutput(); err != nil {
			return fmt.Errorf("packing the %s layer: %w: %s", arch, err, out)
		}
		if info, err = os.Stat(zipFile); err != nil {
			return err
		}
		b.judge("layer zip, "+arch, "≤ 3.5 MB", megabytes(info.Size()), info.Size() <= maxZipBytes)
		if b.opts.baseline != "" {
			if err := b.baselineSizes(ctx, zipper, arch, bin, zipFile); err != nil {
				return err
			}
		}
	}
	return nil
}

// baselineSizes adds the -baseline revision's binary and zip sizes, and
// the working tree's difference from them.
func (b *bench) baselineSizes(ctx context.Context, zipper, arch, bin, zipFile string) error {
	base, err := b.baselineBinary(ctx, arch)
	if err != nil {
		return err
	}
	baseZip := filepath.Join(b.work, "baseline", extensionName+"-"+arch+".zip")
	if out, err := exec.CommandContext(ctx, zipper, "-o", baseZip, "-bin", base).CombinedOutput(); err != nil {
		return fmt.Errorf("packing the baseline's %s layer: %w: %s", arch, err, out)
	}
	for _, pair := range [][3]string{{"binary, stripped, linux/" + arch, base, bin}, {"layer zip, " + arch, baseZip, zipFile}} {
		was, err := os.Stat(pair[1])
		if err != nil {
			return err
		}
		now, err := os.Stat(pair[2])
		if err != nil {
			return err
		}
		b.note(pair[0]+" at "+b.opts.baseline, fmt.Sprintf("%s (the working tree adds %+.3f MB)", megabytes(was.Size()), float64(now.Size()-was.Size())/1e6))
	}
	return nil
}

func megabytes(n int64) string {
	return fmt.Sprintf("%.2f MB (%s)", float64(n)/1e6, mib(n))
}

// measureCPU runs package lifecycle's BenchmarkPipeline on one core (-cpu 1):
// a Telemetry POST of 1000 text lines through the listener's handler, the
// queue, the dispatcher, the encoder and an HTTP push to a server that
// answers 204. It reports the median over the runs.
func measureCPU(ctx context.Context, b *bench) error {
	count := b.reps(5, 2)
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^BenchmarkPipeline$", "-benchmem",
		"-cpu", "1", "-benchtime", "1s", "-count", strconv.Itoa(count), "./lifecycle")
	cmd.Dir = b.root
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if b.opts.verbose {
		cmd.Stdout = io.MultiWriter(&out, b.progress)
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go test -bench: %w: %s", err, out.String())
	}
	results := parseBench(out.String(), "BenchmarkPipeline")
	if len(results) == 0 {
		return fmt.Errorf("no BenchmarkPipeline result in:\n%s", out.String())
	}
	var ns, allocs []float64
	for _, r := range results {
		ns = append(ns, r["ns/line"])
		allocs = append(allocs, r["allocs/line"])
	}
	nsLine := median(ns)
	b.judge("CPU per line, listener → queue → encode → push", "≤ 5 µs",
		fmt.Sprintf("%.2f µs (median of %d runs, %.0f lines/s on one core)", nsLine/1000, len(ns), 1e9/nsLine), nsLine <= maxNsPerLine)
	b.note("allocations per line (same benchmark)", fmt.Sprintf("%.2f", median(allocs)))
	return nil
}

// parseBench reads `go test -bench` result lines of the named benchmark
// into unit → value maps, one per run.
func parseBench(output, name string) []map[string]float64 {
	var runs []map[string]float64
	for _, line := range strings.Split(output, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || (f[0] != name && !strings.HasPrefix(f[0], name+"-")) {
			continue
		}
		values := map[string]float64{}
		// f[1] is the iteration count; then value, unit pairs.
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				values[f[i+1]] = v
			}
		}
		runs = append(runs, values)
	}
	return runs
}

// sandboxFor starts the emulator with the built extension, shipping to
// pushURL, with extra environment.
func (b *bench) sandboxFor(ctx context.Context, function, pushURL string, cfg sandbox.Config, env ...string) (*sandbox.Sandbox, error) {
	dir, err := b.extensionsDir(ctx)
	if err != nil {
		return nil, err
	}
	return b.sandboxIn(ctx, dir, function, pushURL, cfg, env...)
}

// sandboxIn is sandboxFor with the extension in dir.
func (b *bench) sandboxIn(ctx context.Context, dir, function, pushURL string, cfg sandbox.Config, env ...string) (*sandbox.Sandbox, error) {
	port, err := freeport.Pick()
	if err != nil {
		return nil, err
	}
	cfg.ExtensionsDir = dir
	cfg.FunctionName = function
	cfg.Env = append([]string{"AWS_SAM_LOCAL=true", "TELEMETRY_LISTENER_PORT=" + strconv.Itoa(port), "LOKI_URL=" + pushURL}, env...)
	if b.opts.verbose {
		cfg.ExtensionOutput = b.progress
	}
	return sandbox.Start(ctx, cfg)
}

func functionName(scenario string) string {
	return fmt.Sprintf("bench-%s-%d", scenario, time.Now().UnixNano()%1_000_000_000)
}

// inLoki counts the function's own lines Loki holds.
func (b *bench) inLoki(ctx context.Context, function string, since time.Time) (int, error) {
	lines, err := b.loki.Query(ctx, lokiserver.Query{
		LogQL: delivery.Selector(function), Start: since.Add(-time.Minute), End: time.Now().Add(time.Minute),
	})
	return len(lines), err
}

// measureInit starts the extension again and again, the ways being
// measured taking turns so that a change in the machine's load touches them
// alike: configured plainly, with the Loki password kept in Secrets Manager
// (a local stand-in that checks the signature, over plain HTTP on the
// loopback), and, with -baseline, the baseline revision configured plainly.
func measureInit(ctx context.Context, b *bench) error {
	srv, dir, err := b.lokiAndExtensions(ctx)
	if err != nil {
		return err
	}
	aws := fakeaws.Start(fakeaws.Config{})
	defer aws.Close()
	arn := aws.PutSecret("bench-loki", "bench-password")
	type way struct {
		name string
		dir  string
		env  []string
	}
	ways := []way{
		{"plain", dir, nil},
		{"secret", dir, append(aws.Env(), "LOKI_USERNAME=bench", "LOKI_PASSWORD_SECRET_ARN="+arn)},
	}
	if b.opts.baseline != "" {
		base, err := b.baselineBinary(ctx, runtime.GOARCH)
		if err != nil {
			return err
		}
		ways = append(ways, way{"baseline", filepath.Dir(base), nil})
	}
	n := b.reps(20, 5)
	inits := map[string][]time.Duration{}
	for range n {
		for _, w := range ways {
			sb, err := b.sandboxIn(ctx, w.dir, functionName("init"), srv.PushURL(), sandbox.Config{}, w.env...)
			if err != nil {
				return err
			}
			inits[w.name] = append(inits[w.name], sb.InitDuration())
			if _, err := scenario.Shutdown(ctx, sb); err != nil {
				return err
			}
			if strings.Contains(sb.ExtensionOutput(), "invalid configuration") {
				return fmt.Errorf("the extension (%s) ran degraded: %s", w.name, sb.ExtensionOutput())
			}
		}
	}
	if got := aws.Stats().GetSecretValue; got != int64(n) {
		return fmt.Errorf("the secret was fetched %d times in %d starts", got, n)
	}
	describe := func(d []time.Duration) string {
		return fmt.Sprintf("%s median (min %s, max %s, %d starts)", ms(median(d)), ms(slices.Min(d)), ms(slices.Max(d)), len(d))
	}
	m := median(inits["plain"])
	b.judge("init, exec → first /next (Loki reachable)", "≤ 10 ms median", describe(inits["plain"]), m <= maxInitMedian)
	b.note("init with LOKI_PASSWORD_SECRET_ARN (one signed GetSecretValue, local stand-in, no TLS)",
		fmt.Sprintf("%s; %+.1f ms against plain", describe(inits["secret"]), float64(median(inits["secret"])-m)/1e6))
	if b.opts.baseline != "" {
		b.note("init at "+b.opts.baseline+", configured plainly", fmt.Sprintf("%s; the working tree %+.1f ms", describe(inits["baseline"]), float64(m-median(inits["baseline"]))/1e6))
	}

	// What starting any Go program costs here, for scale: the same build
	// flags, a program that prints one line and exits.
	floor, err := b.helloWorld(ctx, n)
	if err != nil {
		return err
	}
	b.note("for scale: hello-world Go binary, exec → exit", fmt.Sprintf("%s median (%d runs)", ms(floor), n))
	return nil
}

// helloWorld builds a minimal Go program like the extension and returns
// the median time from exec to its exit.
func (b *bench) helloWorld(ctx context.Context, n int) (time.Duration, error) {
	dir := filepath.Join(b.work, "hello")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	files := map[string]string{
		"go.mod":  "module hello\n\ngo 1.21\n",
		"main.go": "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return 0, err
		}
	}
	bin := filepath.Join(dir, "hello")
	if err := gobuild.Build(ctx, ".", bin, gobuild.Options{Dir: dir, Layer: true, Env: []string{"GOWORK=off"}}); err != nil {
		return 0, err
	}
	var runs []time.Duration
	for range n {
		start := time.Now()
		if err := exec.CommandContext(ctx, bin).Run(); err != nil {
			return 0, fmt.Errorf("running hello: %w", err)
		}
		runs = append(runs, time.Since(start))
	}
	return median(runs), nil
}

// invokes runs n invocations of fn with gap between them (frozen) and shuts
// down; it returns the results and checks Loki holds every line.
func (b *bench) invokes(ctx context.Context, name string, n int, gap time.Duration, fn sandbox.Function, env ...string) ([]sandbox.InvokeResult, error) {
	srv, err := b.lokiServer(ctx)
	if err != nil {
		return nil, err
	}
	function := functionName(name)
	start := time.Now()
	sb, err := b.sandboxFor(ctx, function, srv.PushURL(), sandbox.Config{}, env...)
	if err != nil {
		return nil, err
	}
	defer sb.Close()
	var results []sandbox.InvokeResult
	written := 0
	for i := range n {
		if i > 0 {
			time.Sleep(gap)
		}
		res, err := sb.Invoke(ctx, fn)
		if err != nil {
			return nil, fmt.Errorf("invoke %d: %w", i, err)
		}
		results = append(results, res)
		written += len(res.Lines)
	}
	if _, err := scenario.Shutdown(ctx, sb); err != nil {
		return nil, err
	}
	got, err := b.inLoki(ctx, function, start)
	if err != nil {
		return nil, err
	}
	if got != written {
		return nil, fmt.Errorf("Loki holds %d of the %d lines written", got, written)
	}
	return results, nil
}

func postRuntime(results []sandbox.InvokeResult) []time.Duration {
	var ds []time.Duration
	for _, r := range results {
		ds = append(ds, r.PostRuntime)
	}
	return ds
}

func measureEndOverhead(ctx context.Context, b *bench) error {
	n := b.reps(30, 10)
	results, err := b.invokes(ctx, "end", n, 100*time.Millisecond, sandbox.Function{Lines: 20, LineBytes: 100, Duration: 10 * time.Millisecond})
	if err != nil {
		return err
	}
	d := postRuntime(results)
	m := median(d)
	b.judge("post-runtime overhead, end mode (runtimeDone → /next)", "≤ 35 ms median (timeoutMs 25 + 10)",
		fmt.Sprintf("%s median (max %s, %d invokes × 20 lines, all in Loki)", ms(m), ms(slices.Max(d)), n), m <= maxEndOverhead)
	return nil
}

func measureAdaptiveOverhead(ctx context.Context, b *bench) error {
	n := b.reps(50, 20)
	results, err := b.invokes(ctx, "adaptive", n, 10*time.Millisecond, sandbox.Function{Lines: 20, LineBytes: 100, Duration: 5 * time.Millisecond},
		"FLUSH_STRATEGY=adaptive")
	if err != nil {
		return err
	}
	// The first invocation has no previous one to call traffic busy.
	d := postRuntime(results[1:])
	m := median(d)
	b.judge("post-runtime overhead, adaptive mode, invokes 10 ms apart", "≤ 2 ms median",
		fmt.Sprintf("%s median (max %s, %d invokes × 20 lines, all in Loki by SHUTDOWN)", ms(m), ms(slices.Max(d)), n), m <= maxAdaptiveOverhead)
	return nil
}

// measureThroughput has the function write lines at a steady rate, twice
// the target, with the extension limited to one core (GOMAXPROCS=1), and
// measures from the INVOKE to the /next that follows the last push: every
// line then went through the listener and was stored by Loki. The figure
// cannot exceed the offered rate; the point is that the extension keeps up
// with it, without Lambda dropping records, and does not fall behind.
// (Offered much faster, past what the default subscription buffering of
// 1000 items and one batch in flight carries, the emulator drops records,
// as Lambda would.)
func measureThroughput(ctx context.Context, b *bench) error {
	srv, err := b.lokiServer(ctx)
	if err != nil {
		return err
	}
	const offered = 100_000 // lines per second, twice the target
	n := b.reps(200_000, 50_000)
	function := functionName("throughput")
	start := time.Now()
	sb, err := b.sandboxFor(ctx, function, srv.PushURL(), sandbox.Config{FunctionTimeout: 15 * time.Second}, "GOMAXPROCS=1")
	if err != nil {
		return err
	}
	defer sb.Close()
	pids := sb.PIDs()
	cpuBefore := cpuTime(pids)
	invokeStart := time.Now()
	res, err := sb.Invoke(ctx, sandbox.Function{Lines: n, LineBytes: 100, Duration: time.Duration(n) * time.Second / offered})
	if err != nil {
		return err
	}
	took := res.Next.Sub(invokeStart)
	cpu := cpuTime(pids) - cpuBefore
	stats := sb.Stats()
	if _, err := scenario.Shutdown(ctx, sb); err != nil {
		return err
	}
	got, err := b.inLoki(ctx, function, start)
	if err != nil {
		return err
	}
	rate := float64(got) / took.Seconds()
	b.judge("throughput, listener → Loki, extension on one core", "≥ 50 000 lines/s, no logsDropped",
		fmt.Sprintf("%.0f lines/s (%d of %d lines in Loki %s after the INVOKE: written in %s, pushed %s after runtimeDone; emulator dropped %d, logsDropped events %d)",
			rate, got, n, took.Round(time.Millisecond), res.RuntimeDone.Sub(invokeStart).Round(time.Millisecond), res.PostRuntime.Round(time.Millisecond),
			stats.DroppedRecords, stats.LogsDroppedEvents),
		rate >= minLinesPerSecond && stats.DroppedRecords == 0 && stats.LogsDroppedEvents == 0 && got == n)
	b.note("CPU per line in the extension process (same run, user + system)",
		fmt.Sprintf("%.2f µs (%s of CPU for %d lines; includes the lifecycle, GC and the push)", cpu.Seconds()*1e6/float64(n), cpu.Round(10*time.Millisecond), n))
	return nil
}

// cpuTime adds the user and system time of processes from /proc/<pid>/stat.
func cpuTime(pids []int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The command name, in parentheses, may hold spaces: count fields
		// after its closing parenthesis; utime and stime are fields 14 and 15.
		rest := string(data)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += utime + stime
	}
	return time.Duration(ticks) * time.Second / extensionCPUTickRate
}

func measureSmallRSS(ctx context.Context, b *bench) error {
	srv, err := b.lokiServer(ctx)
	if err != nil {
		return err
	}
	sb, err := b.sandboxFor(ctx, functionName("rss"), srv.PushURL(), sandbox.Config{})
	if err != nil {
		return err
	}
	defer sb.Close()
	for i := range 5 {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := sb.Invoke(ctx, sandbox.Function{Lines: 20, LineBytes: 120, Duration: 20 * time.Millisecond}); err != nil {
			return err
		}
	}
	sd, err := scenario.Shutdown(ctx, sb)
	if err != nil {
		return err
	}
	b.judge("peak RSS, 5 invokes × 20 lines", "≤ 20 MiB", mib(sd.PeakRSSBytes), sd.PeakRSSBytes <= maxSmallRSS)
	return nil
}

// median is the middle value (the mean of the two middle ones for an even
// count); zero for none.
func median[T float64 | time.Duration](v []T) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
