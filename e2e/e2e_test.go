// Package e2e runs the built extension inside the sandbox emulator against a
// real Loki, and reads the lines back through Loki's query API. Each test
// names the rule of docs/lambda-runtime-contract.md it checks.
package e2e

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/delivery"
	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

func TestMain(m *testing.M) {
	code := m.Run()
	e2etest.Cleanup()
	os.Exit(code)
}

// script runs invocations with frozen gaps and a SHUTDOWN, checking at each
// freeze how many of the invocation's lines Loki already holds.
type script struct {
	function string // default: unique to the test
	pushURL  string // default: the shared Loki's
	// beforeInvoke runs before each invocation (to change a fault, say).
	beforeInvoke func(invoke int)
	env          []string
	cfg          sandbox.Config
	invokes      int
	fn           sandbox.Function
	gap          time.Duration
	atFreeze     func(t *testing.T, invoke int, requestID string) // may be nil
	wantExit     int
}

type outcome struct {
	function string
	start    time.Time
	invokes  []sandbox.InvokeResult
	lines    []sandbox.Line
	shutdown sandbox.ShutdownResult
	sb       *sandbox.Sandbox
}

func run(t *testing.T, sc script) outcome {
	t.Helper()
	srv := e2etest.Loki(t)
	o := outcome{function: sc.function, start: time.Now()}
	if o.function == "" {
		o.function = e2etest.FunctionName(t)
	}
	cfg := sc.cfg
	cfg.FunctionName = o.function
	pushURL := sc.pushURL
	if pushURL == "" {
		pushURL = srv.PushURL()
	}
	cfg.Env = append(e2etest.Env(t, pushURL), sc.env...)
	invoke := 0
	if sc.atFreeze != nil {
		cfg.BeforeFreeze = func(requestID string) { sc.atFreeze(t, invoke, requestID) }
	}
	o.sb = e2etest.StartSandbox(t, cfg)
	for invoke = 0; invoke < sc.invokes; invoke++ {
		if invoke > 0 {
			time.Sleep(sc.gap) // frozen: SIGSTOPped, no telemetry delivered
		}
		if sc.beforeInvoke != nil {
			sc.beforeInvoke(invoke)
		}
		res, err := o.sb.Invoke(t.Context(), sc.fn)
		if err != nil {
			t.Fatalf("invoke %d: %v", invoke, err)
		}
		if res.HeldPastDeadline {
			t.Fatalf("invoke %d: the extension held the sandbox past the deadline (docs/lambda-runtime-contract.md#invoke-and-the-freeze)", invoke)
		}
		o.invokes = append(o.invokes, res)
		o.lines = append(o.lines, res.Lines...)
	}
	sd, err := o.sb.Shutdown(t.Context(), "spindown")
	if err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	o.shutdown = sd
	// docs/lambda-runtime-contract.md#shutdown: the extension must exit by itself
	// before the SHUTDOWN deadline.
	if sd.Killed || sd.ExitCode != sc.wantExit || sd.Duration >= 2*time.Second {
		t.Fatalf("shutdown: killed %v, exit code %d, took %s (deadline 2 s)", sd.Killed, sd.ExitCode, sd.Duration)
	}
	return o
}

// The core promise (README.md, "Nothing lost at the freeze";
// docs/lambda-runtime-contract.md#invoke-and-the-freeze): 5 invokes × 20 lines
// with 2 s frozen gaps; each invocation's lines are in Loki before its /next,
// all with their event timestamps and labels.
func TestTextLinesArriveBeforeEachFreeze(t *testing.T) {
	srv := e2etest.Loki(t)
	function := e2etest.FunctionName(t)
	var perInvoke []int
	o := run(t, script{
		function: function, invokes: 5, gap: 2 * time.Second,
		fn: sandbox.Function{Lines: 20, LineBytes: 120, Duration: 20 * time.Millisecond},
		atFreeze: func(t *testing.T, invoke int, requestID string) {
			perInvoke = append(perInvoke, e2etest.Count(t, srv, fmt.Sprintf(`{function=%q, type=""} |= %q`, function, requestID), time.Now().Add(-time.Hour)))
		},
	})
	for i, n := range perInvoke {
		if n != 20 {
			t.Errorf("invoke %d: %d of 20 lines in Loki at the freeze", i, n)
		}
	}
	d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start)
	if !d.Complete() || d.Written != 100 {
		t.Fatalf("delivery: %s", d)
	}
	lines := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q}`, o.function), o.start, "")
	for _, l := range lines {
		if l.Labels["source"] != "lambda" || l.Labels["function"] != o.function {
			t.Fatalf("labels %v", l.Labels)
		}
	}
	for i, inv := range o.invokes {
		t.Logf("invoke %d: post-runtime overhead %s", i, inv.PostRuntime)
	}
	t.Logf("init %s, shutdown %s, peak RSS %d KiB", o.sb.InitDuration(), o.shutdown.Duration, o.shutdown.PeakRSSBytes/1024)
}

// JSON log format (docs/lambda-runtime-contract.md#text-and-json-records: records are
// objects with schema ≥ 2022-12-13): each record ships as one compact JSON line that LogQL's
// | json parses, stamped with the record's own timestamp.
func TestJSONLogFormat(t *testing.T) {
	srv := e2etest.Loki(t)
	o := run(t, script{
		cfg:     sandbox.Config{LogFormat: "json"},
		invokes: 3, gap: 200 * time.Millisecond,
		fn: sandbox.Function{Lines: 10, LineBytes: 80, Level: "WARN", Fields: map[string]any{"orderId": 42, "nested": map[string]any{"ok": true}}},
	})
	if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() {
		t.Fatalf("delivery: %s", d)
	}
	parsed := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q} | json | level="WARN" | orderId="42" | nested_ok="true"`, o.function), o.start, "")
	if len(parsed) != 30 {
		t.Fatalf("| json matched %d of 30 lines", len(parsed))
	}
	if parsed[0].Labels["requestId"] == "" || !strings.HasPrefix(parsed[0].Labels["message"], "line ") {
		t.Fatalf("parsed labels %v", parsed[0].Labels)
	}
}

// DISPATCH_MIN_BATCH_SIZE > 1 delays pushes (lines wait, frozen, across
// invocations) but SHUTDOWN still delivers everything.
func TestMinBatchSizeDelaysButDelivers(t *testing.T) {
	srv := e2etest.Loki(t)
	function := e2etest.FunctionName(t)
	var atFreeze []int
	o := run(t, script{
		function: function,
		env:      []string{"DISPATCH_MIN_BATCH_SIZE=10"},
		invokes:  4, gap: 300 * time.Millisecond,
		fn: sandbox.Function{Lines: 3},
		atFreeze: func(t *testing.T, invoke int, _ string) {
			atFreeze = append(atFreeze, e2etest.Count(t, srv, fmt.Sprintf(`{function=%q, type=""}`, function), time.Now().Add(-time.Hour)))
		},
	})
	// 3, 6, 9 lines queued: nothing pushed; at 12 ≥ 10 the batch goes out.
	if fmt.Sprint(atFreeze) != "[0 0 0 12]" {
		t.Errorf("lines in Loki at each freeze: %v, want [0 0 0 12]", atFreeze)
	}
	if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() {
		t.Fatalf("delivery: %s", d)
	}
}

func TestTenThousandLinesInOneInvoke(t *testing.T) {
	srv := e2etest.Loki(t)
	o := run(t, script{invokes: 1, fn: sandbox.Function{Lines: 10_000, LineBytes: 100}})
	if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() {
		t.Fatalf("delivery: %s", d)
	}
	if st := o.sb.Stats(); st.DroppedRecords != 0 {
		t.Fatalf("the emulator dropped %d records: the listener was too slow", st.DroppedRecords)
	}
	t.Logf("post-runtime overhead for 10 000 lines: %s", o.invokes[0].PostRuntime)
}

// A 300 KiB line exceeds Loki's 256 KiB max_line_size: it is truncated with a
// marker instead of failing the push, and the lines around it arrive whole.
func TestGiantLineIsTruncatedNotLost(t *testing.T) {
	srv := e2etest.Loki(t)
	giant := "giant " + strings.Repeat("é", 150*1024) // 300 KiB of two-byte characters
	o := run(t, script{invokes: 1, fn: sandbox.Function{Messages: []string{"before", giant, "after"}}})
	lines := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q, type=""}`, o.function), o.start, "")
	if len(lines) != 3 {
		t.Fatalf("%d lines in Loki, want 3", len(lines))
	}
	got := lines[1].Line
	if !strings.HasSuffix(lines[0].Line, "\tbefore") || !strings.HasSuffix(lines[2].Line, "\tafter") ||
		!strings.Contains(got, "\tgiant éé") || !strings.Contains(got, " …[truncated ") || len(got) > 256*1024 {
		t.Fatalf("giant line of %d bytes ends %q", len(got), got[max(0, len(got)-60):])
	}
	if !delivery.SameMillisecond(lines[1].Time, o.lines[1].Time) {
		t.Fatalf("giant line stamped %s, written %s", lines[1].Time, o.lines[1].Time)
	}
}

// AWS's runtime interface emulator and SAM answer the subscription with 202 and
// deliver nothing (docs/lambda-runtime-contract.md#local-emulators): the extension
// must keep the function working, never wait for telemetry, and exit cleanly.
func TestTelemetryNotSupportedKeepsTheLifecycle(t *testing.T) {
	o := run(t, script{cfg: sandbox.Config{TelemetryNotSupported: true}, invokes: 3, gap: 100 * time.Millisecond, fn: sandbox.Function{Lines: 5}})
	for i, inv := range o.invokes {
		if inv.PostRuntime > 500*time.Millisecond {
			t.Errorf("invoke %d waited %s after the runtime for telemetry that never comes", i, inv.PostRuntime)
		}
	}
	if out := o.sb.ExtensionOutput(); !strings.Contains(out, "not supported") {
		t.Fatalf("no warning about the stub in %q", out)
	}
}

// Bad configuration: one clear error naming the variable, and the function
// keeps working (README.md, "Never breaks the function"); STRICT_CONFIG
// reports init/error (docs/lambda-runtime-contract.md#init-error-and-exit-error).
func TestMisconfiguredExtensionKeepsTheFunctionWorking(t *testing.T) {
	sb := e2etest.StartSandbox(t, sandbox.Config{FunctionName: e2etest.FunctionName(t),
		Env: []string{"AWS_SAM_LOCAL=true", "TELEMETRY_LISTENER_PORT=1", "DISPATCH_MIN_BATCH_SIZE=lots"}})
	for i := range 2 {
		res, err := sb.Invoke(t.Context(), sandbox.Function{Lines: 3})
		if err != nil || res.HeldPastDeadline || res.PostRuntime > 500*time.Millisecond {
			t.Fatalf("invoke %d: %v, held %v, overhead %s", i, err, res.HeldPastDeadline, res.PostRuntime)
		}
	}
	sd, err := sb.Shutdown(t.Context(), "spindown")
	if err != nil || sd.Killed || sd.ExitCode != 0 {
		t.Fatalf("shutdown %+v %v", sd, err)
	}
	out := sb.ExtensionOutput()
	for _, want := range []string{"LOKI_URL:", "DISPATCH_MIN_BATCH_SIZE:", "shipping no logs"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "invalid configuration"); n != 1 {
		t.Errorf("the configuration error was logged %d times, want once", n)
	}
}

func TestStrictConfigFailsTheInit(t *testing.T) {
	_, err := sandbox.Start(t.Context(), sandbox.Config{ExtensionsDir: e2etest.ExtensionDir(t), FunctionName: e2etest.FunctionName(t),
		Env: []string{"AWS_SAM_LOCAL=true", "STRICT_CONFIG=true", "LOKI_URL=ftp://nowhere"}})
	var extErr *sandbox.ExtensionError
	if !errors.As(err, &extErr) || extErr.Type != "Extension.InitError" || extErr.ReportedType != "Extension.ConfigInvalid" || !strings.Contains(extErr.Message, "LOKI_URL") {
		t.Fatalf("want an init error naming LOKI_URL, got %v", err)
	}
}

// The suite must be able to fail: an extension that calls /next before it
// pushes (here: FLUSH_STRATEGY=periodic with a long period, which does
// exactly that) leaves the invocation's lines out of Loki at the freeze, and
// the check that TestTextLinesArriveBeforeEachFreeze makes catches it.
func TestFreezeCheckCatchesNextBeforeFlush(t *testing.T) {
	srv := e2etest.Loki(t)
	function := e2etest.FunctionName(t)
	var atFreeze []int
	o := run(t, script{
		function: function,
		env:      []string{"FLUSH_STRATEGY=periodic,600000"},
		invokes:  2, gap: 500 * time.Millisecond,
		fn: sandbox.Function{Lines: 20},
		atFreeze: func(t *testing.T, _ int, requestID string) {
			atFreeze = append(atFreeze, e2etest.Count(t, srv, fmt.Sprintf(`{function=%q, type=""} |= %q`, function, requestID), time.Now().Add(-time.Hour)))
		},
	})
	if fmt.Sprint(atFreeze) == "[20 20]" {
		t.Fatal("lines were in Loki at the freeze although the extension called /next first: the freeze check cannot fail")
	}
	// SHUTDOWN still drains everything.
	if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() {
		t.Fatalf("delivery: %s", d)
	}
}

// Loki stores one of several entries whose stream, time and line are equal, and
// Lambda stamps events to the millisecond
// (docs/lambda-runtime-contract.md#delivery): a function that writes the same line
// twice within a millisecond (a retry loop, blank lines) must still find every
// copy in Loki.
func TestRepeatedLinesAreAllKept(t *testing.T) {
	srv := e2etest.Loki(t)
	o := run(t, script{
		invokes: 3, gap: 100 * time.Millisecond,
		fn: sandbox.Function{Messages: []string{"retrying", "retrying", "retrying", "", "", "done"}},
	})
	if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() || d.Written != 18 {
		t.Fatalf("delivery: %s", d)
	}
}
