// Command demo runs the extension end to end on this machine: it builds the
// extension, gets a real Loki (built once and cached), runs the Lambda
// sandbox emulator with a sample function for a few invocations with the
// freeze between them, then reads the lines back from Loki and prints them
// with their labels and the per-invocation delivery figures.
//
// With -loki-url it ships to a Loki you run yourself (for example the
// grafana-container stack) instead, so you can look at the lines in Grafana.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/freeport"
	"github.com/lambda-loki/grafana-loki-extension/internal/gobuild"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokibin"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

func main() {
	invokes := flag.Int("invokes", 3, "invocations to run")
	lines := flag.Int("lines", 5, "log lines per invocation")
	gap := flag.Duration("gap", time.Second, "frozen time between invocations")
	format := flag.String("format", "text", "function log format: text or json")
	lokiURL := flag.String("loki-url", "", "push to this Loki (base URL, e.g. http://127.0.0.1:3100) instead of starting one")
	verbose := flag.Bool("v", false, "show the extension's own log")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *invokes, *lines, *gap, *format, *lokiURL, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, invokes, lines int, gap time.Duration, format, lokiURL string, verbose bool) error {
	step := func(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

	step("building the extension")
	dir, err := os.MkdirTemp("", "demo-extensions-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := gobuild.Build(ctx, ".", filepath.Join(dir, "grafana-loki-extension"), gobuild.Options{}); err != nil {
		return err
	}

	var srv *lokiserver.Server
	base := strings.TrimSuffix(lokiURL, "/")
	if base == "" {
		step("getting a real Loki %s", lokibin.Version)
		bin, err := lokibin.Ensure(ctx, os.Stdout)
		if err != nil {
			return err
		}
		if srv, err = lokiserver.Start(ctx, lokiserver.Options{Binary: bin}); err != nil {
			return err
		}
		defer srv.Stop()
		base = srv.URL()
		step("Loki is ready at %s", base)
	} else {
		srv = lokiserver.Attach(base)
		step("using your Loki at %s", base)
	}

	function := fmt.Sprintf("demo-%s", time.Now().Format("150405"))
	var output io.Writer
	if verbose {
		output = os.Stdout
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	step("starting the Lambda sandbox emulator with the extension (function %q)", function)
	start := time.Now()
	type figure struct {
		requestID string
		written   int
		atFreeze  int
		overhead  time.Duration
	}
	var figures []figure
	sb, err := sandbox.Start(ctx, sandbox.Config{
		ExtensionsDir: dir, FunctionName: function, LogFormat: format, ExtensionOutput: output,
		Env: []string{"LOKI_URL=" + base + "/api/prom/push", "AWS_SAM_LOCAL=true", "TELEMETRY_LISTENER_PORT=" + port, "SHIP_PLATFORM_LOGS=true", "LOKI_LABELS=env=demo"},
		BeforeFreeze: func(requestID string) {
			got, _ := srv.Query(ctx, lokiserver.Query{LogQL: fmt.Sprintf(`{function=%q, type=""} |= %q`, function, requestID), Start: start.Add(-time.Minute), End: time.Now().Add(time.Minute)})
			figures[len(figures)-1].atFreeze = len(got)
		},
	})
	if err != nil {
		return err
	}
	defer sb.Close()
	fmt.Printf("    init (exec → first /next): %s\n", sb.InitDuration().Round(time.Microsecond))
	for i := range invokes {
		if i > 0 {
			step("frozen for %s (the extension is SIGSTOPped, nothing is delivered)", gap)
			time.Sleep(gap)
		}
		figures = append(figures, figure{written: lines})
		res, err := sb.Invoke(ctx, sandbox.Function{Lines: lines, LineBytes: 60, Duration: 20 * time.Millisecond})
		if err != nil {
			return err
		}
		figures[i].requestID, figures[i].overhead = res.RequestID, res.PostRuntime
		step("invocation %d (%s): %d lines written, %d in Loki at the freeze, post-runtime overhead %s",
			i+1, res.RequestID[:8], lines, figures[i].atFreeze, res.PostRuntime.Round(time.Microsecond))
	}
	sd, err := sb.Shutdown(ctx, "spindown")
	if err != nil {
		return err
	}
	step("SHUTDOWN: the extension exited with %d after %s (deadline 2 s, killed: %v)", sd.ExitCode, sd.Duration.Round(time.Millisecond), sd.Killed)

	got, err := srv.Query(ctx, lokiserver.Query{LogQL: fmt.Sprintf(`{function=%q}`, function), Start: start.Add(-time.Minute), End: time.Now().Add(time.Minute)})
	if err != nil {
		return err
	}
	step("%d lines read back from Loki with {function=%q}:", len(got), function)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tLABELS\tLINE")
	for _, l := range got {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", l.Time.UTC().Format("15:04:05.000"), labels(l.Labels), strings.ReplaceAll(l.Line, "\t", " "))
	}
	_ = tw.Flush()
	fmt.Println()
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "invocation\trequest\twritten\tin Loki at freeze\tpost-runtime overhead\t")
	for i, f := range figures {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\t\n", i+1, f.requestID[:8], f.written, f.atFreeze, f.overhead.Round(time.Microsecond))
	}
	_ = tw.Flush()
	if lokiURL == "" {
		fmt.Println("\nTo see them in Grafana, start grafana-container/ and run: go tool task demo -- -loki-url http://127.0.0.1:3100")
	}
	return nil
}

// labels shows the labels the extension set (Loki 3 adds its own).
func labels(all map[string]string) string {
	var out []string
	for _, k := range []string{"source", "function", "type", "env"} {
		if v, ok := all[k]; ok {
			out = append(out, k+"="+v)
		}
	}
	return "{" + strings.Join(out, ",") + "}"
}

func freePort() (string, error) {
	srv, err := freeport.Pick()
	return fmt.Sprint(srv), err
}
