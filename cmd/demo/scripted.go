package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// runScripted runs the emulator's scripted function for a few invocations
// and shows, for each, how many of its lines were in Loki at the freeze:
// all of them, since the extension pushes before /next.
func runScripted(ctx context.Context, s setup, o options) error {

	invokes, lines, gap, format := o.invokes, o.lines, o.gap, o.format
	if format == "" {
		format = "text"
	}
	srv := s.srv
	function := fmt.Sprintf("demo-%s", time.Now().Format("150405"))
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
		ExtensionsDir: s.extensionsDir, FunctionName: function, LogFormat: format, ExtensionOutput: s.output,
		Env: s.env(),
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
	return nil
}
