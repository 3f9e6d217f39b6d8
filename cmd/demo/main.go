// Command demo runs the extension end to end on this machine: it builds the
// extension, gets a real Loki (built once and cached), and runs the
// article's three test functions (functions/: Go, TypeScript, Python) in the
// Lambda sandbox emulator, each by its real runtime, in the text and the
// JSON log format, with the freeze between invocations. Then it reads each
// function's lines back from Loki and prints, per function and format, the
// lines written and the lines read back, and a LogQL query to paste.
//
// With -scripted it runs the emulator's scripted function instead and
// shows, invocation by invocation, that the lines are in Loki before the
// sandbox freezes. With -loki-url it ships to a Loki you run yourself (for
// example the grafana-container stack), so you can look in Grafana.
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
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/freeport"
	"github.com/lambda-loki/grafana-loki-extension/internal/gobuild"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokibin"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
)

// options are the demo's flags.
type options struct {
	scripted bool
	invokes  int
	lines    int
	gap      time.Duration
	format   string
	only     string
	lokiURL  string
	verbose  bool
}

func main() {
	var o options
	flag.BoolVar(&o.scripted, "scripted", false, "run the emulator's scripted function instead of the three real ones")
	flag.IntVar(&o.invokes, "invokes", 2, "invocations to run per function and format")
	flag.IntVar(&o.lines, "lines", 5, "log lines per invocation (-scripted)")
	flag.DurationVar(&o.gap, "gap", 500*time.Millisecond, "frozen time between invocations")
	flag.StringVar(&o.format, "format", "", "function log format: text or json (default: both; text with -scripted)")
	flag.StringVar(&o.only, "function", "", "run only this function: go, typescript or python")
	flag.StringVar(&o.lokiURL, "loki-url", "", "push to this Loki (base URL, e.g. http://127.0.0.1:3100) instead of starting one")
	flag.BoolVar(&o.verbose, "v", false, "show the extension's own log")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// step prints one stage of the demo.
func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

// setup is what both demos share: the built extension and a Loki.
type setup struct {
	extensionsDir string
	srv           *lokiserver.Server
	base          string
	output        io.Writer // the extension's own log, or nil
	port          string    // the extension's telemetry listener port
}

func run(ctx context.Context, o options) error {
	step("building the extension")
	dir, err := os.MkdirTemp("", "demo-extensions-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := gobuild.Build(ctx, ".", filepath.Join(dir, "grafana-loki-extension"), gobuild.Options{}); err != nil {
		return err
	}
	s := setup{extensionsDir: dir, base: strings.TrimSuffix(o.lokiURL, "/")}
	if s.base == "" {
		step("getting a real Loki %s", lokibin.Version)
		bin, err := lokibin.Ensure(ctx, os.Stdout)
		if err != nil {
			return err
		}
		if s.srv, err = lokiserver.Start(ctx, lokiserver.Options{Binary: bin}); err != nil {
			return err
		}
		defer s.srv.Stop()
		s.base = s.srv.URL()
		step("Loki is ready at %s", s.base)
	} else {
		s.srv = lokiserver.Attach(s.base)
		step("using your Loki at %s", s.base)
	}
	if o.verbose {
		s.output = os.Stdout
	}
	port, err := freeport.Pick()
	if err != nil {
		return err
	}
	s.port = fmt.Sprint(port)
	if o.scripted {
		err = runScripted(ctx, s, o)
	} else {
		err = runFunctions(ctx, s, o)
	}
	if err == nil && o.lokiURL == "" {
		fmt.Println("\nTo see them in Grafana, start grafana-container/ and run: go tool task demo -- -loki-url http://127.0.0.1:3100")
	}
	return err
}

// env is the extension's configuration in the demo.
func (s setup) env() []string {
	return []string{"LOKI_URL=" + s.base + "/api/prom/push", "AWS_SAM_LOCAL=true", "TELEMETRY_LISTENER_PORT=" + s.port, "SHIP_PLATFORM_LOGS=true", "LOKI_LABELS=env=demo"}
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
