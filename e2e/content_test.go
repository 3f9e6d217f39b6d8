package e2e

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/gobuild"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// The content users query: what the lines look like in Loki, on
// which streams, and that LogQL can use them. Each test names the section
// of docs/lambda-runtime-contract.md it checks.

// instant runs a LogQL metric query now, the way a Grafana panel or an
// alert rule would.
func instant(t *testing.T, srv *lokiserver.Server, logql string) []lokiserver.Sample {
	t.Helper()
	samples, err := srv.Instant(t.Context(), logql, time.Now(), "")
	if err != nil {
		t.Fatalf("query %s: %v", logql, err)
	}
	return samples
}

// byLabel indexes samples by one label's value.
func byLabel(samples []lokiserver.Sample, name string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range samples {
		out[s.Labels[name]] = s.Value
	}
	return out
}

// reportFloat and reportInt read a platform.report metric the emulator sent.
func reportFloat(t *testing.T, inv sandbox.InvokeResult, name string) float64 {
	t.Helper()
	m, _ := inv.Report["metrics"].(map[string]any)
	switch v := m[name].(type) {
	case float64:
		return v
	case int:
		return float64(v)
	case int64:
		return float64(v)
	}
	t.Fatalf("report of %s has no %s: %v", inv.RequestID, name, inv.Report)
	return 0
}

// runFunctions runs one invocation per fn with frozen gaps between them and then a
// SHUTDOWN, like run, except that the invocations may differ and the last one may
// end in a reset (a timeout or a crash resets the sandbox:
// docs/lambda-runtime-contract.md#reset-after-a-failure), whose SHUTDOWN must end
// as cleanly as a spin-down.
func runFunctions(t *testing.T, cfg sandbox.Config, env []string, gap time.Duration, fns ...sandbox.Function) outcome {
	t.Helper()
	srv := e2etest.Loki(t)
	o := outcome{function: e2etest.FunctionName(t), start: time.Now()}
	cfg.FunctionName = o.function
	cfg.Env = append(e2etest.Env(t, srv.PushURL()), env...)
	o.sb = e2etest.StartSandbox(t, cfg)
	for i, fn := range fns {
		if i > 0 {
			time.Sleep(gap)
		}
		res, err := o.sb.Invoke(t.Context(), fn)
		if err != nil {
			t.Fatalf("invoke %d: %v", i, err)
		}
		if res.HeldPastDeadline {
			t.Fatalf("invoke %d: the extension held the sandbox past the deadline (docs/lambda-runtime-contract.md#invoke-and-the-freeze)", i)
		}
		o.invokes = append(o.invokes, res)
		o.lines = append(o.lines, res.Lines...)
		if res.Reset != nil {
			if i != len(fns)-1 {
				t.Fatalf("invoke %d reset the sandbox; only the last may", i)
			}
			o.shutdown = *res.Reset
		}
	}
	if o.shutdown.Reason == "" {
		sd, err := o.sb.Shutdown(t.Context(), "spindown")
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		o.shutdown = sd
	}
	if sd := o.shutdown; sd.Killed || sd.ExitCode != 0 || sd.Duration >= 2*time.Second {
		t.Fatalf("shutdown (%s): killed %v, exit code %d, took %s (deadline 2 s)", sd.Reason, sd.Killed, sd.ExitCode, sd.Duration)
	}
	return o
}

// docs/lambda-runtime-contract.md#text-and-json-records, JSON log format: a record
// that arrives as an object ships as one compact JSON line with all its keys,
// which LogQL's | json parses, and is stamped with the record's own timestamp, not
// the event's (the emulator stamps events 250 ms after the runtime wrote the
// record, so the two differ). Its level becomes a label only with
// LOKI_LEVEL_LABEL=true: Loki 3 detects levels by itself.
func TestJSONRecordsParseAndKeepTheirTimestamps(t *testing.T) {
	tests := []struct {
		name       string
		env        []string
		levelLabel bool
	}{
		{"default: no level label", nil, false},
		{"LOKI_LEVEL_LABEL=true", []string{"LOKI_LEVEL_LABEL=true"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := e2etest.Loki(t)
			o := run(t, script{
				cfg: sandbox.Config{LogFormat: "json", CaptureLag: 250 * time.Millisecond},
				env: tt.env, invokes: 2, gap: 200 * time.Millisecond,
				fn: sandbox.Function{Lines: 5, Level: "WARN", Fields: map[string]any{"orderId": 7, "customer": map[string]any{"tier": "gold"}}},
			})
			// The record's timestamp, to the millisecond, on every line.
			if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() {
				t.Fatalf("delivery (times are the records' timestamps): %s", d)
			}
			// A stream label wins over a parsed key of the same name: with
			// the level label, | json puts the record's level in level_extracted.
			level := `level="WARN"`
			if tt.levelLabel {
				level = `level="warn" | level_extracted="WARN"`
			}
			parsed := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q} | json | %s | orderId="7" | customer_tier="gold"`, o.function, level), o.start, "")
			if len(parsed) != 10 {
				t.Fatalf("| json matched %d of 10 lines", len(parsed))
			}
			requests := map[string]bool{o.invokes[0].RequestID: true, o.invokes[1].RequestID: true}
			for _, l := range parsed {
				if !requests[l.Labels["requestId"]] || !strings.HasPrefix(l.Labels["message"], "line ") || l.Labels["timestamp"] != l.Time.UTC().Format(sandbox.TimeLayout) {
					t.Fatalf("line at %s parsed into %v", l.Time.Format(time.RFC3339Nano), l.Labels)
				}
			}
			withLevel := e2etest.Count(t, srv, fmt.Sprintf(`{function=%q, level="warn"}`, o.function), o.start)
			anyLevel := e2etest.Count(t, srv, fmt.Sprintf(`{function=%q, level=~".+"}`, o.function), o.start)
			if tt.levelLabel && withLevel != 10 {
				t.Fatalf("%d of 10 lines on a level=\"warn\" stream", withLevel)
			}
			if !tt.levelLabel && anyLevel != 0 {
				t.Fatalf("%d lines carry a level label although LOKI_LEVEL_LABEL is off", anyLevel)
			}
		})
	}
}

// LogQL for REPORT lines as the README shows it, checked against a real Loki
// by TestReportLinesChartDurationAndMemory.
const (
	readmeLongest            = `max by (function) (max_over_time({function="my-fn", type="platform"} |= "REPORT" | unwrap duration_ms [5m]))`
	readmeDurationPerRequest = `max by (request_id) (max_over_time({function="my-fn", type="platform"} |= "REPORT" | unwrap duration_ms [5m]))`
	readmeMaxMemory          = `max by (function) (max_over_time({function="my-fn", type="platform"} |= "REPORT" | unwrap max_memory_used_mb [5m]))`
	readmeTimeouts           = `sum by (function) (count_over_time({function="my-fn", type="platform"} |= "REPORT" | status="timeout" [1h]))`
	readmeLongestByRegexp    = `max by (function) (max_over_time({function="my-fn", type="platform"} |= "REPORT" | regexp "Duration: (?P<duration_ms>[0-9.]+) ms" | unwrap duration_ms [5m]))`
	// Not in the README: the per-request table's memory column.
	memoryPerRequest = `max by (request_id) (max_over_time({function="my-fn", type="platform"} |= "REPORT" | pattern "REPORT RequestId: <request_id>\t<_>\tMax Memory Used: <max_memory_mb> MB<_>" | unwrap max_memory_mb [5m]))`
)

// readme returns a README query for function over the last hour.
func readme(query, function string) string {
	return strings.NewReplacer(`"my-fn"`, strconv.Quote(function), "[5m]", "[1h]").Replace(query)
}

// docs/lambda-runtime-contract.md#event-catalogue (platform.start, platform.runtimeDone,
// platform.report; no platform.end in the Telemetry API) and
// #flushing-without-losing-lines (the last invocation's report
// arrives only after the extension's /next): with SHIP_PLATFORM_LOGS=true
// every invocation has START, END and a REPORT in CloudWatch's format on the
// type="platform" stream, the last one too, and LogQL's unwrap reads back
// exactly the durations and memory the platform reported.
func TestReportLinesChartDurationAndMemory(t *testing.T) {
	srv := e2etest.Loki(t)
	slow := sandbox.Function{Lines: 3, Duration: 120 * time.Millisecond}
	failing := sandbox.Function{Lines: 2, Outcome: sandbox.Error}
	o := runFunctions(t, sandbox.Config{}, []string{"SHIP_PLATFORM_LOGS=true"}, 300*time.Millisecond,
		sandbox.Function{Lines: 3}, slow, failing, sandbox.Function{Lines: 1})
	platform := fmt.Sprintf(`{function=%q, type="platform"}`, o.function)
	for i, inv := range o.invokes {
		lines := e2etest.Query(t, srv, fmt.Sprintf(`%s |= %q`, platform, inv.RequestID), o.start, "")
		var kinds []string
		for _, l := range lines {
			kinds = append(kinds, strings.Fields(l.Line)[0])
		}
		if strings.Join(kinds, " ") != "START END REPORT" {
			t.Fatalf("invoke %d: platform lines %q, want START END REPORT", i, kinds)
		}
		report := lines[2].Line
		wantPrefix := fmt.Sprintf("REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %d ms\tMemory Size: 128 MB\tMax Memory Used: %d MB",
			inv.RequestID, reportFloat(t, inv, "durationMs"), int(reportFloat(t, inv, "billedDurationMs")), int(reportFloat(t, inv, "maxMemoryUsedMB")))
		if !strings.HasPrefix(report, wantPrefix) {
			t.Errorf("invoke %d:\n got %q\nwant %q…", i, report, wantPrefix)
		}
		// Only the cold start has an init duration; only a failure a status.
		if hasInit := strings.Contains(report, "\tInit Duration: "); hasInit != (i == 0) {
			t.Errorf("invoke %d: Init Duration present %v: %q", i, hasInit, report)
		}
		failed := inv.Status != "success"
		if hasStatus := strings.HasSuffix(report, "\tStatus: error\tError Type: Function.Error"); hasStatus != failed {
			t.Errorf("invoke %d (status %s): %q", i, inv.Status, report)
		}
	}

	// One query for all invocations, grouped by the request ID every REPORT
	// carries as structured metadata (never a label), as a Grafana table would.
	durations := byLabel(instant(t, srv, readme(readmeDurationPerRequest, o.function)), "request_id")
	memory := byLabel(instant(t, srv, readme(memoryPerRequest, o.function)), "request_id")
	// The same with a regexp instead of a pattern.
	byRegexp := byLabel(instant(t, srv, fmt.Sprintf("max by (request_id) (max_over_time(%s |= \"REPORT\" | regexp `RequestId: (?P<request_id>\\S+)\\tDuration: (?P<duration_ms>[0-9.]+) ms` | unwrap duration_ms [1h]))", platform)), "request_id")
	// The text rounds to 10 µs; the metadata keeps what Lambda reported.
	for id, d := range durations {
		if text, ok := byRegexp[id]; !ok || math.Abs(text-d) > 0.005001 || len(byRegexp) != len(durations) {
			t.Errorf("the regexp over the text and the metadata disagree: %v, %v", byRegexp, durations)
			break
		}
	}
	longest, most := 0.0, 0.0
	for i, inv := range o.invokes {
		want := reportFloat(t, inv, "durationMs")
		longest = max(longest, want)
		most = max(most, reportFloat(t, inv, "maxMemoryUsedMB"))
		if got, ok := durations[inv.RequestID]; !ok || math.Abs(got-want) > 0.005001 {
			t.Errorf("invoke %d: unwrap duration %v (found %v), platform reported %.3f ms", i, got, ok, want)
		}
		if got := memory[inv.RequestID]; got != reportFloat(t, inv, "maxMemoryUsedMB") {
			t.Errorf("invoke %d: unwrap memory %v MB, platform reported %v", i, got, reportFloat(t, inv, "maxMemoryUsedMB"))
		}
	}
	if len(durations) != len(o.invokes) {
		t.Errorf("durations for %d requests, want %d: %v", len(durations), len(o.invokes), durations)
	}
	// The README's panel query: the longest invocation in the window. Loki 3
	// splits series by the detected_level it gives each line (a REPORT with
	// an Error Type is "error"), so the query aggregates by function.
	top := instant(t, srv, readme(readmeLongest, o.function))
	if len(top) != 1 || math.Abs(top[0].Value-longest) > 0.005001 {
		t.Errorf("max_over_time gave %v, the longest invocation took %.3f ms", top, longest)
	}
	if peak := instant(t, srv, readme(readmeMaxMemory, o.function)); len(peak) != 1 || peak[0].Value != most {
		t.Errorf("max_over_time gave %v, the platform reported at most %v MB", peak, most)
	}
	// Where Loki refuses structured metadata, the text gives the same.
	if top := instant(t, srv, readme(readmeLongestByRegexp, o.function)); len(top) != 1 || math.Abs(top[0].Value-longest) > 0.005001 {
		t.Errorf("the regexp over the text gave %v, the longest invocation took %.3f ms", top, longest)
	}
	// No invocation timed out.
	if timeouts := instant(t, srv, readme(readmeTimeouts, o.function)); len(timeouts) != 0 {
		t.Errorf("timeouts: %v, want none", timeouts)
	}
	// The function's own stream holds the function's lines and, for the
	// failed invocation, the line that says so; no platform lines.
	want := append([]sandbox.Line(nil), o.lines...)
	failedLine := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q, type=""} |= "Invocation failed: RequestId: %s Status: error Error Type: Function.Error"`, o.function, o.invokes[2].RequestID), o.start, "")
	if len(failedLine) != 1 {
		t.Fatalf("%d lines say that invocation 2 failed, want 1", len(failedLine))
	}
	want = append(want, sandbox.Line{Time: failedLine[0].Time, Text: failedLine[0].Line})
	if d := e2etest.CheckDelivery(t, srv, o.function, want, o.start); !d.Complete() {
		t.Fatalf("function stream: %s", d)
	}
}

// Labels (README.md, "Labels and cardinality"): source and function, plus LOKI_LABELS on
// every stream, and never a request ID. A bad label name is one clear error
// naming LOKI_LABELS, and the function keeps working
// (docs/lambda-runtime-contract.md#reset-after-a-failure: the
// extension follows the lifecycle and exits cleanly at SHUTDOWN).
func TestUserLabels(t *testing.T) {
	tests := []struct {
		name      string
		labels    string
		wantError string // empty: the labels must be on every stream
	}{
		{"two static labels", "team=payments, env=prod", ""},
		{"name starting with a digit", "9bad=x", `LOKI_LABELS: label name "9bad" is invalid`},
		{"name with a dash", "team=a,deploy-env=prod", `LOKI_LABELS: label name "deploy-env" is invalid`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := e2etest.Loki(t)
			o := run(t, script{
				env:     []string{"LOKI_LABELS=" + tt.labels, "SHIP_PLATFORM_LOGS=true"},
				invokes: 2, gap: 100 * time.Millisecond, fn: sandbox.Function{Lines: 4},
			})
			for i, inv := range o.invokes {
				if inv.PostRuntime > 500*time.Millisecond {
					t.Errorf("invoke %d: post-runtime overhead %s", i, inv.PostRuntime)
				}
			}
			lines := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q}`, o.function), o.start, "")
			out := strings.ReplaceAll(o.sb.ExtensionOutput(), `\"`, `"`) // logrus quotes the message
			if tt.wantError != "" {
				if !strings.Contains(out, tt.wantError) || strings.Count(out, "invalid configuration") != 1 {
					t.Fatalf("want one error with %q in the extension's output:\n%s", tt.wantError, out)
				}
				if len(lines) != 0 {
					t.Fatalf("%d lines shipped with a bad configuration", len(lines))
				}
				return
			}
			if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() {
				t.Fatalf("delivery: %s", d)
			}
			types := map[string]int{}
			for _, l := range lines {
				types[l.Labels["type"]]++
				if l.Labels["team"] != "payments" || l.Labels["env"] != "prod" || l.Labels["source"] != "lambda" {
					t.Fatalf("line %q has labels %v", l.Line, l.Labels)
				}
			}
			// Request IDs are structured metadata, which query results show
			// beside the labels; the series, Loki's index, must have none.
			var series struct {
				Data []map[string]string `json:"data"`
			}
			if err := srv.Get(t.Context(), "/loki/api/v1/series?match[]="+url.QueryEscape(fmt.Sprintf(`{function=%q}`, o.function)), "", &series); err != nil {
				t.Fatal(err)
			}
			if len(series.Data) == 0 {
				t.Fatal("no series")
			}
			for _, labels := range series.Data {
				for name, value := range labels {
					for _, inv := range o.invokes {
						if strings.Contains(value, inv.RequestID) || name == "request_id" || name == "trace_id" {
							t.Fatalf("stream label %s=%q: request and trace IDs must never be labels", name, value)
						}
					}
				}
			}
			if types[""] != 8 || types["platform"] != 6 {
				t.Fatalf("lines per type label: %v, want 8 function and 6 platform", types)
			}
		})
	}
}

// docs/lambda-runtime-contract.md#event-catalogue (runtimeDone status timeout | failure |
// error) and #reset-after-a-failure (a
// timeout or a crash resets the sandbox: SHUTDOWN with reason timeout or
// failure right away, no waiting for /next): the line that says so, with
// the request ID, is in Loki, and no line the invocation wrote is lost.
func TestTimedOutAndCrashedInvocationsAreFindable(t *testing.T) {
	tests := []struct {
		name       string
		outcome    sandbox.Outcome
		wantLines  []string // on the function stream; %s is the request ID
		wantReport string
	}{
		{"timeout", sandbox.Timeout, []string{
			"Task timed out: RequestId: %s Status: timeout Error Type: Sandbox.Timeout Duration: ",
			"SHUTDOWN Reason: timeout RequestId: %s",
		}, "\tStatus: timeout\tError Type: Sandbox.Timeout"},
		{"crash", sandbox.Crash, []string{
			"Invocation failed: RequestId: %s Status: failure Error Type: Runtime.ExitError",
			"SHUTDOWN Reason: failure RequestId: %s",
		}, "\tStatus: failure\tError Type: Runtime.ExitError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := e2etest.Loki(t)
			o := runFunctions(t, sandbox.Config{FunctionTimeout: time.Second}, []string{"SHIP_PLATFORM_LOGS=true"}, 200*time.Millisecond,
				sandbox.Function{Lines: 5},
				sandbox.Function{Lines: 8, Duration: 50 * time.Millisecond, Outcome: tt.outcome})
			last := o.invokes[1]
			if o.shutdown.Reason != map[sandbox.Outcome]string{sandbox.Timeout: "timeout", sandbox.Crash: "failure"}[tt.outcome] {
				t.Fatalf("the sandbox reset with reason %q", o.shutdown.Reason)
			}
			want := append([]sandbox.Line(nil), o.lines...)
			for _, format := range tt.wantLines {
				prefix := fmt.Sprintf(format, last.RequestID)
				found := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q, type=""} |= %q`, o.function, prefix), o.start, "")
				if len(found) != 1 || !strings.HasPrefix(found[0].Line, prefix) {
					t.Fatalf("want one line starting %q, found %v", prefix, found)
				}
				want = append(want, sandbox.Line{Time: found[0].Time, Text: found[0].Line})
			}
			// The README's search for failed invocations finds both lines.
			failures := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q} |~ "Task timed out|Invocation failed|SHUTDOWN Reason"`, o.function), o.start, "")
			if len(failures) != 2 {
				t.Fatalf("the search for failures found %d lines, want 2", len(failures))
			}
			// Every line of both invocations, and nothing else, once each.
			if d := e2etest.CheckDelivery(t, srv, o.function, want, o.start); !d.Complete() || d.Written != 5+8+2 {
				t.Fatalf("delivery: %s", d)
			}
			reports := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q, type="platform"} |= "REPORT RequestId: %s"`, o.function, last.RequestID), o.start, "")
			if len(reports) != 1 || !strings.HasSuffix(reports[0].Line, tt.wantReport) {
				t.Fatalf("REPORT of the failed invocation: %v", reports)
			}
		})
	}
}

// docs/lambda-runtime-contract.md#managed-instances: the extension registers for SHUTDOWN
// only (the emulator refuses INVOKE with 403), subscribes with schema
// 2025-01-29 (the emulator refuses older ones), gets no INVOKE and no
// runtimeDone, is never frozen, and sees concurrent invocations whose events
// interleave. Lines must reach Loki on the timer alone, and whatever is left
// at SHUTDOWN is drained.
func TestManagedInstancesFlushOnATimerAndDrain(t *testing.T) {
	srv := e2etest.Loki(t)
	function := e2etest.FunctionName(t)
	start := time.Now()
	sb := e2etest.StartSandbox(t, sandbox.Config{
		FunctionName: function, Mode: sandbox.ModeManagedInstances,
		Env: e2etest.Env(t, srv.PushURL(), "SHIP_PLATFORM_LOGS=true"),
	})
	burst := func(n int) []sandbox.InvokeResult {
		results := make([]sandbox.InvokeResult, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				results[i], errs[i] = sb.Invoke(t.Context(), sandbox.Function{Lines: 10, Duration: 30 * time.Millisecond})
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		return results
	}
	count := func(results []sandbox.InvokeResult) int {
		n := 0
		for _, r := range results {
			n += e2etest.Count(t, srv, fmt.Sprintf(`{function=%q, type=""} |= %q`, function, r.RequestID), start)
		}
		return n
	}

	first := burst(3)
	if sb.Frozen() {
		t.Fatal("a Managed Instances environment froze (docs/lambda-runtime-contract.md#managed-instances: never frozen)")
	}
	// No INVOKE reaches the extension, so only its timer (1 s) can push.
	deadline := time.Now().Add(3 * time.Second)
	for count(first) < 30 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if n := count(first); n != 30 {
		t.Fatalf("%d of 30 lines in Loki 3 s after the invocations, before any SHUTDOWN", n)
	}
	second := burst(3)
	sd, err := sb.Shutdown(t.Context(), "spindown")
	if err != nil || sd.Killed || sd.ExitCode != 0 || sd.Duration >= 2*time.Second {
		t.Fatalf("shutdown %+v %v", sd, err)
	}
	var lines []sandbox.Line
	for _, r := range append(first, second...) {
		lines = append(lines, r.Lines...)
	}
	if d := e2etest.CheckDelivery(t, srv, function, lines, start); !d.Complete() || d.Written != 60 {
		t.Fatalf("delivery: %s", d)
	}
	// Managed Instances reports carry only the duration, and there is no
	// runtimeDone, so START and REPORT but no END.
	for _, r := range append(first, second...) {
		got := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q, type="platform"} |= %q`, function, r.RequestID), start, "")
		want := []string{"START RequestId: " + r.RequestID + " Version: $LATEST",
			fmt.Sprintf("REPORT RequestId: %s\tDuration: %.2f ms", r.RequestID, reportFloat(t, r, "durationMs"))}
		if len(got) != 2 || got[0].Line != want[0] || got[1].Line != want[1] {
			t.Fatalf("platform lines of %s: %v, want %q", r.RequestID, got, want)
		}
	}
	// The README's per-request query reads these shorter lines too.
	durations := byLabel(instant(t, srv, readme(readmeDurationPerRequest, function)), "request_id")
	for _, r := range append(first, second...) {
		if got, want := durations[r.RequestID], reportFloat(t, r, "durationMs"); math.Abs(got-want) > 0.005001 {
			t.Errorf("unwrap duration of %s: %v, platform reported %.3f ms", r.RequestID, got, want)
		}
	}
}

// connTracker is a TCP proxy to Loki that remembers every connection, and
// can cut them all the way a SnapStart restore on another host does: the
// peer never answers again and never closes, so a request sent on such a
// connection waits for its timeout.
type connTracker struct {
	ln       net.Listener
	upstream string

	mu    sync.Mutex
	conns []*trackedConn
}

type trackedConn struct {
	opened         time.Time
	client, server net.Conn
	cut            atomic.Bool
	// bytesAfterCut counts what the client sent on the connection after it
	// was cut; clientClosed is set when the client closed it.
	bytesAfterCut atomic.Int64
	clientClosed  atomic.Bool
}

func trackConns(t *testing.T, upstreamURL string) *connTracker {
	t.Helper()
	u, err := url.Parse(upstreamURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ct := &connTracker{ln: ln, upstream: u.Host}
	go ct.accept()
	t.Cleanup(ct.close)
	return ct
}

func (ct *connTracker) pushURL() string { return "http://" + ct.ln.Addr().String() + "/api/prom/push" }

func (ct *connTracker) accept() {
	for {
		client, err := ct.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", ct.upstream)
		if err != nil {
			client.Close()
			continue
		}
		c := &trackedConn{opened: time.Now(), client: client, server: server}
		ct.mu.Lock()
		ct.conns = append(ct.conns, c)
		ct.mu.Unlock()
		go func() {
			buf := make([]byte, 32*1024)
			for {
				n, err := client.Read(buf)
				if c.cut.Load() {
					c.bytesAfterCut.Add(int64(n))
				} else if n > 0 {
					_, _ = server.Write(buf[:n])
				}
				if err != nil {
					c.clientClosed.Store(true)
					server.Close()
					return
				}
			}
		}()
		go func() {
			_, _ = io.Copy(client, server)
			if !c.cut.Load() {
				client.Close()
			}
		}()
	}
}

// cutAll cuts every connection open now, and returns how many there were.
func (ct *connTracker) cutAll() []*trackedConn {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	cut := append([]*trackedConn(nil), ct.conns...)
	for _, c := range cut {
		c.cut.Store(true)
		c.server.Close()
	}
	return cut
}

func (ct *connTracker) openedSince(t0 time.Time) int {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	n := 0
	for _, c := range ct.conns {
		if c.opened.After(t0) {
			n++
		}
	}
	return n
}

func (ct *connTracker) close() {
	ct.ln.Close()
	ct.mu.Lock()
	defer ct.mu.Unlock()
	for _, c := range ct.conns {
		c.client.Close()
		c.server.Close()
	}
}

// docs/lambda-runtime-contract.md#snapstart: init (with the extension's registration and
// subscription) runs before the snapshot; the restored environment gets
// platform.restoreStart, restoreRuntimeDone and restoreReport and no event
// for extensions; its first REPORT has a Restore Duration instead of an
// Init Duration. Every line is delivered, the init's too, nothing crashes,
// and a connection to Loki kept from before the snapshot is never used
// again: the extension dials anew after the restore.
func TestSnapStartRestore(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		// pushedBeforeSnapshot: the init's lines reach Loki before the
		// snapshot, so a kept-alive connection is in the snapshot.
		pushedBeforeSnapshot bool
	}{
		{"push before /next: the init's lines wait in the snapshot", nil, false},
		{"periodic push: a connection from before the snapshot", []string{"FLUSH_STRATEGY=periodic,50"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := e2etest.Loki(t)
			ct := trackConns(t, srv.URL())
			function := e2etest.FunctionName(t)
			start := time.Now()
			sb := e2etest.StartSandbox(t, sandbox.Config{
				FunctionName: function, Mode: sandbox.ModeSnapStart,
				RuntimeInit: 600 * time.Millisecond, InitLines: []string{"loading the model", "model loaded"},
				Env: e2etest.Env(t, ct.pushURL(), append([]string{"SHIP_PLATFORM_LOGS=true", "LOG_LEVEL=debug"}, tt.env...)...),
			})
			if !sb.Frozen() {
				t.Fatal("a SnapStart environment is not frozen (snapshotted) after init")
			}
			before := e2etest.Count(t, srv, fmt.Sprintf(`{function=%q, type=""}`, function), start)
			if tt.pushedBeforeSnapshot != (before == 2) || tt.pushedBeforeSnapshot != (ct.openedSince(start) > 0) {
				t.Fatalf("before the snapshot: %d init lines in Loki, %d connections", before, ct.openedSince(start))
			}
			// The snapshot is restored, elsewhere and later: whatever
			// connection it holds leads nowhere now.
			time.Sleep(300 * time.Millisecond)
			stale := ct.cutAll()
			restored := time.Now()
			if err := sb.Restore(t.Context()); err != nil {
				t.Fatal(err)
			}
			lines := sb.InitLines()
			var invokes []sandbox.InvokeResult
			for i := range 3 {
				if i > 0 {
					time.Sleep(200 * time.Millisecond)
				}
				res, err := sb.Invoke(t.Context(), sandbox.Function{Lines: 5})
				if err != nil || res.HeldPastDeadline {
					t.Fatalf("invoke %d: %v, held %v", i, err, res.HeldPastDeadline)
				}
				invokes = append(invokes, res)
				lines = append(lines, res.Lines...)
			}
			sd, err := sb.Shutdown(t.Context(), "spindown")
			if err != nil || sd.Killed || sd.ExitCode != 0 || sd.Duration >= 2*time.Second {
				t.Fatalf("shutdown %+v %v", sd, err)
			}
			if d := e2etest.CheckDelivery(t, srv, function, lines, start); !d.Complete() || d.Written != 2+15 {
				t.Fatalf("delivery: %s", d)
			}
			for _, c := range stale {
				if n := c.bytesAfterCut.Load(); n > 0 || !c.clientClosed.Load() {
					t.Errorf("a connection from before the snapshot got %d bytes after the restore, closed by the extension: %v", n, c.clientClosed.Load())
				}
			}
			if ct.openedSince(restored) == 0 {
				t.Error("no connection to Loki was dialled after the restore")
			}
			if tt.pushedBeforeSnapshot && !strings.Contains(sb.ExtensionOutput(), "restored from a SnapStart snapshot") {
				t.Error("the extension did not notice the restore")
			}
			reports := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q, type="platform"} |= "REPORT"`, function), start, "")
			if len(reports) != 3 {
				t.Fatalf("%d REPORT lines, want 3", len(reports))
			}
			for i, r := range reports {
				if strings.Contains(r.Line, "Init Duration") || strings.Contains(r.Line, "Restore Duration: ") != (i == 0) {
					t.Errorf("REPORT %d: %q", i, r.Line)
				}
			}
			if invokes[0].Report["metrics"].(map[string]any)["restoreDurationMs"] == nil {
				t.Errorf("the first report after the restore has no restoreDurationMs: %v", invokes[0].Report)
			}
		})
	}
}

// withTestext returns an extensions directory holding the extension and the
// emulator's small test extension, which writes a line for every event it
// gets: a second extension whose log lines Lambda captures
// (docs/lambda-runtime-contract.md#text-and-json-records, type "extension").
func withTestext(t *testing.T) string {
	t.Helper()
	testextPath, err := gobuild.Binary(gobuild.Module + "/sandbox/internal/testext")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, src := range []string{filepath.Join(e2etest.ExtensionDir(t), e2etest.ExtensionName), testextPath} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(src)), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// docs/lambda-runtime-contract.md#text-and-json-records, extension records: with
// SHIP_EXTENSION_LOGS=true the lines extensions write reach Loki on a
// type="extension" stream, those written during init too (replayed to the
// subscriber: #delivery), and none on the function's stream. The extension's own
// debug log is among them: it must not feed on itself (a line per push would come
// back as a line to push) and hold SHUTDOWN up.
func TestExtensionLines(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		ship bool
	}{
		{"off by default", nil, false},
		{"SHIP_EXTENSION_LOGS=true", []string{"SHIP_EXTENSION_LOGS=true"}, true},
		{"with the extension's own debug log", []string{"SHIP_EXTENSION_LOGS=true", "LOG_LEVEL=debug"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := e2etest.Loki(t)
			function := e2etest.FunctionName(t)
			start := time.Now()
			sb, err := sandbox.Start(t.Context(), sandbox.Config{
				ExtensionsDir: withTestext(t), FunctionName: function,
				Env: e2etest.Env(t, srv.PushURL(), tt.env...),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				sb.Close()
				if t.Failed() {
					t.Logf("extensions' output:\n%s", sb.ExtensionOutput())
				}
			})
			var lines []sandbox.Line
			var ids []string
			for i := range 3 {
				if i > 0 {
					time.Sleep(200 * time.Millisecond)
				}
				res, err := sb.Invoke(t.Context(), sandbox.Function{Lines: 4})
				if err != nil || res.HeldPastDeadline {
					t.Fatalf("invoke %d: %v, held %v", i, err, res.HeldPastDeadline)
				}
				lines = append(lines, res.Lines...)
				ids = append(ids, res.RequestID)
			}
			sd, err := sb.Shutdown(t.Context(), "spindown")
			if err != nil || sd.Killed || sd.ExitCode != 0 || sd.Duration >= time.Second {
				t.Fatalf("shutdown took %s (killed %v, exit %d): %v", sd.Duration, sd.Killed, sd.ExitCode, err)
			}
			if d := e2etest.CheckDelivery(t, srv, function, lines, start); !d.Complete() {
				t.Fatalf("function stream: %s", d)
			}
			extension := fmt.Sprintf(`{function=%q, type="extension"}`, function)
			all := e2etest.Query(t, srv, extension, start, "")
			if !tt.ship {
				if len(all) != 0 {
					t.Fatalf("%d extension lines shipped without SHIP_EXTENSION_LOGS", len(all))
				}
				return
			}
			if n := e2etest.Count(t, srv, extension+` |= "register: 200 "`, start); n != 1 {
				t.Errorf("the test extension's registration line, written during init: %d in Loki, want 1", n)
			}
			for i, id := range ids {
				if n := e2etest.Count(t, srv, fmt.Sprintf(`%s |= "event: {" |= %q`, extension, id), start); n != 1 {
					t.Errorf("invoke %d: %d lines of the test extension about its INVOKE, want 1", i, n)
				}
			}
			output := sb.ExtensionOutput()
			for _, l := range all {
				if !strings.Contains(output, l.Line+"\n") {
					t.Errorf("shipped extension line %q was never written", l.Line)
				}
			}
		})
	}
}
