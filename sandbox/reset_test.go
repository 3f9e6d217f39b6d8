package sandbox

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// phases returns the phase of each event of one type.
func phases(events []map[string]any, typ string) string {
	var out []string
	for _, e := range eventsOf(events, typ) {
		rec, _ := e["record"].(map[string]any)
		out = append(out, fmt.Sprint(rec["phase"]))
	}
	return strings.Join(out, ",")
}

// A crash resets the environment (docs/lambda-runtime-contract.md#reset-after-a-failure):
// an extension that exits outside SHUTDOWN fails the invocation
// (Extension.Crash in its report), the other extensions get SHUTDOWN with
// reason "failure", and the next Invoke initialises a new environment
// first: init events with phase "invoke", a report with initDurationMs, and
// /tmp kept (the crasher finds the mark it left there and runs on).
func TestExtensionCrashResetsTheEnvironment(t *testing.T) {
	l := withListener(t, "2022-12-13", "TESTEXT_CRASH_ONCE.crasher=1", "TESTEXT_LISTEN.crasher=", "TESTEXT_SUBSCRIBE.crasher=")
	l.cfg.ExtensionsDir = testExtension(t, "crasher", "testext")
	sb, err := Start(t.Context(), l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	res, err := sb.Invoke(t.Context(), Function{Lines: 1})
	var extErr *ExtensionError
	if !errors.As(err, &extErr) || extErr.Type != "Extension.Crash" || extErr.Extension != "crasher" {
		t.Fatalf("the crashing invocation returned %v, want the crasher's Extension.Crash", err)
	}
	if res.Reset == nil || res.Reset.Reason != "failure" || res.Reset.ExitCodes["testext"] != 0 || res.Reset.Killed {
		t.Fatalf("reset %+v", res.Reset)
	}
	if res.Report["status"] != "error" || res.Report["errorType"] != "Extension.Crash" {
		t.Fatalf("report of the crashing invocation %v", res.Report)
	}
	if out := sb.ExtensionOutput(); !strings.Contains(out, `"shutdownReason":"failure"`) {
		t.Fatalf("the other extension got no SHUTDOWN with reason failure:\n%s", out)
	}
	next, err := sb.Invoke(t.Context(), Function{Lines: 2})
	if err != nil || next.Reset != nil || len(next.Lines) != 2 {
		t.Fatalf("the invocation after the reset: %v, %+v", err, next)
	}
	if _, err := sb.Shutdown(t.Context(), "spindown"); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(sb.ExtensionOutput(), "register: 200"); n != 4 {
		t.Errorf("%d registrations, want 2 per environment", n)
	}
	events := recorded(t, l.record)
	for _, typ := range []string{"platform.initStart", "platform.initRuntimeDone", "platform.initReport"} {
		if got := phases(events, typ); got != "init,invoke" {
			t.Errorf("%s phases %q, want the init's then the suppressed init's: init,invoke", typ, got)
		}
	}
	// Both invocations were the first of their environment: cold starts.
	reports := eventsOf(events, "platform.report")
	if len(reports) != 2 || reportMetrics(reports[0])["initDurationMs"] == nil || reportMetrics(reports[1])["initDurationMs"] == nil {
		t.Errorf("reports delivered %v", reports)
	}
	if f := sb.Failures(); len(f) != 1 || f[0] != extErr {
		t.Errorf("failures %v", f)
	}
}

// An extension that dies between invocations (here killed while frozen) is
// reset by the next Invoke, which then runs in a new environment and
// succeeds; the failure is on record.
func TestCrashBetweenInvocationsIsResetByTheNextInvoke(t *testing.T) {
	sb, err := Start(t.Context(), Config{ExtensionsDir: testExtension(t, "testext")})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if _, err := sb.Invoke(t.Context(), Function{Lines: 1}); err != nil {
		t.Fatal(err)
	}
	old := sb.PIDs()[0]
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); sb.Crash() == nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the kill was not seen as a crash")
		}
	}
	res, err := sb.Invoke(t.Context(), Function{Lines: 1})
	if err != nil || res.Reset != nil {
		t.Fatalf("the invocation after the crash: %v, reset %+v", err, res.Reset)
	}
	if pids := sb.PIDs(); len(pids) != 1 || pids[0] == old {
		t.Fatalf("extension processes %v, want a new one instead of %d", pids, old)
	}
	if f := sb.Failures(); len(f) != 1 || f[0].Type != "Extension.Crash" {
		t.Fatalf("failures %v", f)
	}
}

// Config.NextFailures makes the Extensions API fail chosen /next calls with
// a 500, as Lambda does once the sandbox is beyond saving. The test
// extension, like the real one, gives up with exit/error after 3 failures
// in a row, and only in a row: the exit/error fails the invocation and
// resets the environment, while failures with good events between them
// change nothing.
func TestNextFailures(t *testing.T) {
	tests := []struct {
		name    string
		failing []int // /next calls answered 500 (1 is the init's)
		// wantErr is the ReportedType of the first invocation's error.
		wantErr string
	}{
		{"three in a row", []int{2, 3, 4}, "Extension.NextFailed"},
		{"never three in a row", []int{1, 3, 5}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb, err := Start(t.Context(), Config{ExtensionsDir: testExtension(t, "testext"), NextFailures: func(ext string, call int) int {
				if ext == "testext" && slices.Contains(tt.failing, call) {
					return 500
				}
				return 0
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer sb.Close()
			res, err := sb.Invoke(t.Context(), Function{Lines: 1})
			var extErr *ExtensionError
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("invoke: %v", err)
			case tt.wantErr != "" && (!errors.As(err, &extErr) || extErr.Type != "Extension.ExitError" || extErr.ReportedType != tt.wantErr || res.Reset == nil):
				t.Fatalf("invoke: %v, reset %+v; want an Extension.ExitError (%s) and a reset", err, res.Reset, tt.wantErr)
			}
			if _, err := sb.Invoke(t.Context(), Function{Lines: 1}); err != nil {
				t.Fatalf("the second invocation: %v", err)
			}
			sd, err := sb.Shutdown(t.Context(), "spindown")
			if err != nil || sd.ExitCode != 0 {
				t.Fatalf("shutdown %+v: %v", sd, err)
			}
			if n := strings.Count(sb.ExtensionOutput(), "next: 500 "); n != len(tt.failing) {
				t.Errorf("the extension saw %d failed /next calls, want %d:\n%s", n, len(tt.failing), sb.ExtensionOutput())
			}
			if n := len(sb.Failures()); (n != 0) != (tt.wantErr != "") {
				t.Errorf("failures %v", sb.Failures())
			}
		})
	}
}
