package e2e

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// The lifecycle's failure paths, with the real extension: a reset after
// another extension crashes, and an Extensions API that fails /next.

// failNext is a Config.NextFailures that answers the given /next calls of
// the extension (1 is its init's first) with a 500.
func failNext(calls ...int) func(string, int) int {
	return func(extension string, call int) int {
		if extension == e2etest.ExtensionName && slices.Contains(calls, call) {
			return 500
		}
		return 0
	}
}

// A crash resets the sandbox (docs/lambda-runtime-contract.md#reset-after-a-failure):
// the test extension beside ours exits on its first INVOKE, which fails that
// invocation with Extension.Crash and resets the environment. Ours gets
// SHUTDOWN with reason "failure", drains and exits 0; the next invocation
// initialises both anew (a suppressed init: its REPORT has an Init
// Duration), and every line, before and after the reset, is in Loki once.
func TestExtensionCrashResetsAndLinesStillArrive(t *testing.T) {
	srv := e2etest.Loki(t)
	function := e2etest.FunctionName(t)
	start := time.Now()
	sb := e2etest.StartSandbox(t, sandbox.Config{
		ExtensionsDir: withTestext(t), FunctionName: function,
		Env: e2etest.Env(t, srv.PushURL(), "SHIP_PLATFORM_LOGS=true", "TESTEXT_CRASH_ONCE=1"),
	})
	crashed, err := sb.Invoke(t.Context(), sandbox.Function{Lines: 5})
	var extErr *sandbox.ExtensionError
	if !errors.As(err, &extErr) || extErr.Type != "Extension.Crash" || extErr.Extension != "testext" {
		t.Fatalf("the invocation during the crash returned %v, want testext's Extension.Crash", err)
	}
	if sd := crashed.Reset; sd == nil || sd.Reason != "failure" || sd.Killed || sd.ExitCodes[e2etest.ExtensionName] != 0 {
		t.Fatalf("reset after the crash: %+v", sd)
	}
	lines := crashed.Lines
	var after []sandbox.InvokeResult
	for i := range 2 {
		time.Sleep(100 * time.Millisecond)
		res, err := sb.Invoke(t.Context(), sandbox.Function{Lines: 5})
		if err != nil || res.Reset != nil || res.HeldPastDeadline {
			t.Fatalf("invoke %d after the reset: %v, reset %+v, held %v", i, err, res.Reset, res.HeldPastDeadline)
		}
		after = append(after, res)
		lines = append(lines, res.Lines...)
	}
	sd, err := sb.Shutdown(t.Context(), "spindown")
	if err != nil || sd.Killed || sd.ExitCodes[e2etest.ExtensionName] != 0 {
		t.Fatalf("shutdown %+v: %v", sd, err)
	}

	// The reset's SHUTDOWN line is on the function's stream with the others.
	shutdownLine := fmt.Sprintf("SHUTDOWN Reason: failure RequestId: %s", crashed.RequestID)
	found := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q, type=""} |= %q`, function, shutdownLine), start, "")
	if len(found) != 1 {
		t.Fatalf("want one %q line, found %v", shutdownLine, found)
	}
	want := append(lines, sandbox.Line{Time: found[0].Time, Text: found[0].Line})
	if d := e2etest.CheckDelivery(t, srv, function, want, start); !d.Complete() || d.Written != 16 {
		t.Fatalf("delivery: %s", d)
	}
	reports := map[string]string{}
	for _, l := range e2etest.Query(t, srv, fmt.Sprintf(`{function=%q, type="platform"} |= "REPORT"`, function), start, "") {
		reports[strings.Fields(l.Line)[2]] = l.Line
	}
	checks := []struct {
		what, requestID, want string
		has                   bool
	}{
		{"the crashed invocation's REPORT", crashed.RequestID, "\tStatus: error\tError Type: Extension.Crash", true},
		{"the first REPORT after the reset", after[0].RequestID, "\tInit Duration: ", true},
		{"the second REPORT after the reset", after[1].RequestID, "\tInit Duration: ", false},
	}
	for _, c := range checks {
		if line, ok := reports[c.requestID]; !ok || strings.Contains(line, c.want) != c.has {
			t.Errorf("%s: %q (want %q: %v)", c.what, line, c.want, c.has)
		}
	}
}

// An Extensions API that answers /next with a 500 three times in a row
// (docs/lambda-runtime-contract.md#error-answers: the sandbox is beyond
// saving) makes the extension push what it holds, then report exit/error
// (Extension.NextFailed) and exit; Lambda fails the invocation with
// Extension.ExitError and resets. DISPATCH_MIN_BATCH_SIZE keeps the
// invocation's lines queued at its end, so only that drain can deliver them.
func TestNextFailingThreeTimesDrainsThenReportsExitError(t *testing.T) {
	srv := e2etest.Loki(t)
	function := e2etest.FunctionName(t)
	start := time.Now()
	sb := e2etest.StartSandbox(t, sandbox.Config{
		FunctionName: function, NextFailures: failNext(2, 3, 4),
		Env: e2etest.Env(t, srv.PushURL(), "DISPATCH_MIN_BATCH_SIZE=10"),
	})
	res, err := sb.Invoke(t.Context(), sandbox.Function{Lines: 4})
	var extErr *sandbox.ExtensionError
	if !errors.As(err, &extErr) || extErr.Type != "Extension.ExitError" || extErr.ReportedType != "Extension.NextFailed" {
		t.Fatalf("the invocation returned %v, want an Extension.ExitError reported as Extension.NextFailed", err)
	}
	if res.Reset == nil || res.Reset.ExitCodes[e2etest.ExtensionName] != 1 || res.Report["errorType"] != "Extension.ExitError" {
		t.Fatalf("reset %+v, report %v", res.Reset, res.Report)
	}
	if d := e2etest.CheckDelivery(t, srv, function, res.Lines, start); !d.Complete() {
		t.Fatalf("delivery: %s", d)
	}
	if out := sb.ExtensionOutput(); strings.Count(out, "asking the Extensions API for the next event failed") != 3 {
		t.Fatalf("want 3 logged /next failures:\n%s", out)
	}
}

// Failures of /next count only in a row: a good event resets the count
// (docs/lambda-runtime-contract.md#error-answers). With /next answering
// 500, INVOKE, 500, INVOKE, 500, SHUTDOWN, the extension must keep going and
// never report exit/error, whether it runs or, misconfigured, only follows
// the lifecycle.
func TestNextFailuresCountOnlyInARow(t *testing.T) {
	tests := []struct {
		name    string
		lokiURL bool
	}{
		{"running", true},
		{"degraded: no LOKI_URL", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := e2etest.Loki(t)
			function := e2etest.FunctionName(t)
			start := time.Now()
			pushURL := ""
			if tt.lokiURL {
				pushURL = srv.PushURL()
			}
			sb := e2etest.StartSandbox(t, sandbox.Config{FunctionName: function, NextFailures: failNext(1, 3, 5), Env: e2etest.Env(t, pushURL)})
			var lines []sandbox.Line
			for i := range 2 {
				res, err := sb.Invoke(t.Context(), sandbox.Function{Lines: 3})
				if err != nil || res.Reset != nil || res.HeldPastDeadline {
					t.Fatalf("invoke %d: %v, reset %+v, held %v", i, err, res.Reset, res.HeldPastDeadline)
				}
				lines = append(lines, res.Lines...)
			}
			sd, err := sb.Shutdown(t.Context(), "spindown")
			if err != nil || sd.Killed || sd.ExitCode != 0 || len(sb.Failures()) != 0 {
				t.Fatalf("shutdown %+v: %v; failures %v", sd, err, sb.Failures())
			}
			if out := sb.ExtensionOutput(); strings.Count(out, "asking the Extensions API for the next event failed") != 3 {
				t.Fatalf("want 3 logged /next failures:\n%s", out)
			}
			if !tt.lokiURL {
				return
			}
			if d := e2etest.CheckDelivery(t, srv, function, lines, start); !d.Complete() {
				t.Fatalf("delivery: %s", d)
			}
		})
	}
}
