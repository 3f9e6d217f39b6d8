package sandbox

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// eventsOf returns the recorded events of one type.
func eventsOf(events []map[string]any, typ string) []map[string]any {
	var out []map[string]any
	for _, e := range events {
		if e["type"] == typ {
			out = append(out, e)
		}
	}
	return out
}

func reportMetrics(e map[string]any) map[string]any {
	rec, _ := e["record"].(map[string]any)
	m, _ := rec["metrics"].(map[string]any)
	return m
}

// docs/lambda-runtime-contract.md#event-catalogue: the first invocation's
// platform.report carries initDurationMs (the cold start), later ones do not; as
// sent to the listener, not only as returned to the test.
func TestFirstReportCarriesTheInitDuration(t *testing.T) {
	l := withListener(t, "2022-12-13")
	sb, err := Start(t.Context(), l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	for range 2 {
		if _, err := sb.Invoke(t.Context(), Function{Lines: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sb.Shutdown(t.Context(), "spindown"); err != nil {
		t.Fatal(err)
	}
	reports := eventsOf(recorded(t, l.record), "platform.report")
	if len(reports) != 2 {
		t.Fatalf("%d reports", len(reports))
	}
	if reportMetrics(reports[0])["initDurationMs"] == nil || reportMetrics(reports[1])["initDurationMs"] != nil {
		t.Fatalf("initDurationMs in the reports: %v, %v", reportMetrics(reports[0]), reportMetrics(reports[1]))
	}
}

// docs/lambda-runtime-contract.md#managed-instances: SHUTDOWN-only registration, schema
// 2025-01-29, no INVOKE to extensions, no runtimeDone, reports with only
// durationMs, and the environment is never frozen.
func TestManagedInstancesMode(t *testing.T) {
	l := withListener(t, "2025-01-29", `TESTEXT_EVENTS=["SHUTDOWN"]`)
	l.cfg.Mode = ModeManagedInstances
	sb, err := Start(t.Context(), l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if sb.Frozen() {
		t.Fatal("frozen after init")
	}
	res, err := sb.Invoke(t.Context(), Function{Lines: 2})
	if err != nil {
		t.Fatal(err)
	}
	if sb.Frozen() || processState(t, sb.PIDs()[0], 'S') == 'T' {
		t.Fatal("frozen after an invocation")
	}
	if _, err := sb.Shutdown(t.Context(), "spindown"); err != nil {
		t.Fatal(err)
	}
	events := recorded(t, l.record)
	if n := len(eventsOf(events, "platform.runtimeDone")); n != 0 {
		t.Fatalf("%d runtimeDone events on Managed Instances", n)
	}
	reports := eventsOf(events, "platform.report")
	if len(reports) != 1 || len(reportMetrics(reports[0])) != 1 || reportMetrics(reports[0])["durationMs"] == nil {
		t.Fatalf("reports %v", reports)
	}
	if len(res.Lines) != 2 || len(eventsOf(events, "function")) != 2 {
		t.Fatalf("lines %v", res.Lines)
	}
	if out := sb.ExtensionOutput(); strings.Contains(out, `"INVOKE"`) || !strings.Contains(out, `"SHUTDOWN"`) {
		t.Fatalf("events the extension saw:\n%s", out)
	}
}

// docs/lambda-runtime-contract.md#snapstart: init, then the snapshot (frozen); the restore emits
// restoreStart, restoreRuntimeDone and restoreReport and renders nothing to
// extensions; the first report has restoreDurationMs and no initDurationMs.
// An environment is restored once; Invoke restores it when the test did not.
func TestSnapStartMode(t *testing.T) {
	for _, explicit := range []bool{true, false} {
		name := "Invoke restores"
		if explicit {
			name = "Restore then Invoke"
		}
		t.Run(name, func(t *testing.T) {
			l := withListener(t, "2022-12-13")
			l.cfg.Mode = ModeSnapStart
			sb, err := Start(t.Context(), l.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer sb.Close()
			if !sb.Frozen() || processState(t, sb.PIDs()[0], 'T') != 'T' {
				t.Fatal("not frozen after init: there is no snapshot")
			}
			seenBefore := sb.ExtensionOutput()
			if explicit {
				if err := sb.Restore(t.Context()); err != nil {
					t.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond)
				if out := sb.ExtensionOutput(); out != seenBefore {
					t.Fatalf("the extension got an event at the restore: %q", strings.TrimPrefix(out, seenBefore))
				}
			}
			if _, err := sb.Invoke(t.Context(), Function{Lines: 1}); err != nil {
				t.Fatal(err)
			}
			if err := sb.Restore(t.Context()); !errors.Is(err, ErrRestored) {
				t.Fatalf("a second restore: %v", err)
			}
			if _, err := sb.Shutdown(t.Context(), "spindown"); err != nil {
				t.Fatal(err)
			}
			got := strings.Join(types(recorded(t, l.record)), ",")
			want := "platform.initReport,platform.restoreStart,platform.restoreRuntimeDone,platform.restoreReport,platform.start,function,platform.runtimeDone,platform.report"
			if !strings.HasSuffix(got, want) {
				t.Fatalf("events:\n%s\nwant them to end with\n%s", got, want)
			}
			m := reportMetrics(eventsOf(recorded(t, l.record), "platform.report")[0])
			if m["restoreDurationMs"] == nil || m["initDurationMs"] != nil {
				t.Fatalf("report metrics %v", m)
			}
		})
	}
	if err := (&Sandbox{cfg: Config{Mode: ModeOnDemand}, changed: make(chan struct{})}).Restore(t.Context()); !errors.Is(err, ErrNotSnapStart) {
		t.Fatalf("restoring an on-demand environment: %v", err)
	}
}

// docs/lambda-runtime-contract.md#text-and-json-records: the function's init lines
// come before any invocation and carry no request ID; a JSON record keeps the
// runtime's timestamp while Lambda stamps the event CaptureLag later.
func TestInitLinesAndCaptureLag(t *testing.T) {
	l := withListener(t, "2022-12-13")
	l.cfg.LogFormat = "json"
	l.cfg.CaptureLag = 100 * time.Millisecond
	l.cfg.InitLines = []string{"cold"}
	sb, err := Start(t.Context(), l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if _, err := sb.Invoke(t.Context(), Function{Lines: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Shutdown(t.Context(), "spindown"); err != nil {
		t.Fatal(err)
	}
	fns := eventsOf(recorded(t, l.record), "function")
	if len(fns) != 2 {
		t.Fatalf("%d function events", len(fns))
	}
	init := sb.InitLines()
	rec, _ := fns[0]["record"].(map[string]any)
	if len(init) != 1 || rec["message"] != "cold" || rec["requestId"] != nil || !strings.Contains(init[0].Text, `"message":"cold"`) {
		t.Fatalf("init line %v, record %v", init, rec)
	}
	for _, e := range fns {
		rec := e["record"].(map[string]any)
		evTime, err1 := time.Parse(TimeLayout, e["time"].(string))
		recTime, err2 := time.Parse(TimeLayout, rec["timestamp"].(string))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if lag := evTime.Sub(recTime); lag < 99*time.Millisecond || lag > 101*time.Millisecond {
			t.Fatalf("event stamped %s after its record", lag)
		}
	}
	if !init[0].Time.Equal(mustParse(t, rec["timestamp"].(string))) {
		t.Fatalf("the init line's expected time %s is not the record's timestamp %s", init[0].Time, rec["timestamp"])
	}
}

func mustParse(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(TimeLayout, s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}
