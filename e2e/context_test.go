package e2e

import (
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// contextFields are the structured metadata of a line's context; a line
// read back from Loki has its metadata among its labels.
var contextFields = []string{"log_stream", "function_version", "function_alias", "cold_start", "restored", "runtime", "architecture"}

// reportFields are the REPORT's figures as structured metadata, by the
// platform.report metric each holds.
var reportFields = map[string]string{
	"duration_ms": "durationMs", "billed_duration_ms": "billedDurationMs", "memory_size_mb": "memorySizeMB",
	"max_memory_used_mb": "maxMemoryUsedMB", "init_duration_ms": "initDurationMs", "restore_duration_ms": "restoreDurationMs",
}

// linesOf returns every line of the function (all streams), by the
// invocation it belongs to ("" for init lines).
func linesOf(t *testing.T, srv *lokiserver.Server, function string, start time.Time) map[string][]lokiserver.Line {
	t.Helper()
	out := map[string][]lokiserver.Line{}
	for _, l := range e2etest.Query(t, srv, fmt.Sprintf(`{function=%q}`, function), start, "") {
		out[l.Labels["request_id"]] = append(out[l.Labels["request_id"]], l)
	}
	return out
}

// checkContext checks that every line carries exactly want of the context
// fields (a field absent from want must be absent from the line), except
// that a line other than the REPORT may lack function_alias.
func checkContext(t *testing.T, what string, lines []lokiserver.Line, want map[string]string) {
	t.Helper()
	if len(lines) == 0 {
		t.Errorf("%s: no lines", what)
	}
	for _, l := range lines {
		for _, f := range contextFields {
			if f == "function_alias" && !strings.HasPrefix(l.Line, "REPORT ") && l.Labels[f] == "" {
				// The INVOKE that names the alias and the invocation's
				// events come by different ways: lines handled before the
				// INVOKE carry none. The REPORT comes after the extension's
				// /next, so it always has it.
				continue
			}
			if got := l.Labels[f]; got != want[f] {
				t.Errorf("%s: %q has %s=%q, want %q", what, l.Line, f, got, want[f])
			}
		}
	}
}

// checkReport checks a REPORT line's figures against what the emulator
// reported, field by field, and that LogQL unwraps them without a parser.
func checkReport(t *testing.T, srv *lokiserver.Server, function string, inv sandbox.InvokeResult, lines []lokiserver.Line) {
	t.Helper()
	var report *lokiserver.Line
	for i := range lines {
		if strings.HasPrefix(lines[i].Line, "REPORT ") {
			report = &lines[i]
		}
	}
	if report == nil {
		t.Fatalf("no REPORT for %s", inv.RequestID)
	}
	metrics, _ := inv.Report["metrics"].(map[string]any)
	for field, metric := range reportFields {
		got, has := report.Labels[field]
		if _, reported := metrics[metric]; reported != has {
			t.Errorf("REPORT %s: %s present %v, %s reported %v", inv.RequestID, field, has, metric, reported)
			continue
		}
		if !has {
			continue
		}
		v, err := strconv.ParseFloat(got, 64)
		if want := reportFloat(t, inv, metric); err != nil || math.Abs(v-want) > 1e-9 {
			t.Errorf("REPORT %s: %s=%q, the platform reported %v", inv.RequestID, field, got, want)
		}
	}
	if report.Labels["status"] != inv.Status || report.Labels["error_type"] != fmt.Sprint(valueOr(inv.Report["errorType"], "")) {
		t.Errorf("REPORT %s: status %q, error_type %q; reported %v", inv.RequestID, report.Labels["status"], report.Labels["error_type"], inv.Report)
	}
	q := fmt.Sprintf(`max by (request_id) (max_over_time({function=%q, type="platform"} | request_id=%q | unwrap duration_ms [1h]))`, function, inv.RequestID)
	if got := instant(t, srv, q); len(got) != 1 || math.Abs(got[0].Value-reportFloat(t, inv, "durationMs")) > 1e-9 {
		t.Errorf("unwrap duration_ms of %s: %v, reported %v", inv.RequestID, got, reportFloat(t, inv, "durationMs"))
	}
}

// lambdaArch is the architecture as Lambda names it, of the extension the
// tests build for this machine.
func lambdaArch() string {
	if runtime.GOARCH == "amd64" {
		return "x86_64"
	}
	return runtime.GOARCH
}

func valueOr(v any, def any) any {
	if v == nil {
		return def
	}
	return v
}

// Every line, the function's and the platform's, init's too, carries the
// sandbox's context; the first invocation's lines say it was the cold
// start; an alias the INVOKE names is on its lines; the REPORT's figures are
// numbers LogQL unwraps. With LOKI_METADATA_EXCLUDE naming every field,
// none is there, and the lines are still all delivered.
func TestContextOnEveryLine(t *testing.T) {
	const stream = "2026/12/03/[$LATEST]0123456789abcdef0123456789abcdef"
	sandboxCtx := map[string]string{"log_stream": stream, "function_version": "$LATEST", "runtime": "python3.12", "architecture": lambdaArch(), "function_alias": "live"}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for a, b := range sandboxCtx {
			m[a] = b
		}
		return m
	}
	tests := []struct {
		name string
		env  []string
		// init, cold and warm are the context wanted on the init lines, the
		// first invocation's and the others'.
		init, cold, warm map[string]string
		report           bool
	}{
		{"all on", nil, withoutAlias(sandboxCtx), with("cold_start", "true"), sandboxCtx, true},
		{"all off", []string{"LOKI_METADATA_EXCLUDE=log_stream,function_version,cold_start,restored,runtime,architecture,report"}, nil, nil, nil, false},
		{"cold start and runtime off", []string{"LOKI_METADATA_EXCLUDE=cold_start,runtime"},
			without(withoutAlias(sandboxCtx), "runtime"), without(sandboxCtx, "runtime"), without(sandboxCtx, "runtime"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := e2etest.Loki(t)
			o := runFunctions(t, sandbox.Config{Alias: "live", InitLines: []string{"init line"}},
				append([]string{"SHIP_PLATFORM_LOGS=true", "AWS_LAMBDA_LOG_STREAM_NAME=" + stream, "AWS_EXECUTION_ENV=AWS_Lambda_python3.12"}, tt.env...),
				100*time.Millisecond, sandbox.Function{Lines: 3}, sandbox.Function{Lines: 2, Outcome: sandbox.Error}, sandbox.Function{Lines: 2})
			byInvocation := linesOf(t, srv, o.function, o.start)
			checkContext(t, "init", byInvocation[""], tt.init)
			for i, inv := range o.invokes {
				want := tt.warm
				if i == 0 {
					want = tt.cold
				}
				lines := byInvocation[inv.RequestID]
				if len(lines) != len(inv.Lines)+3+map[bool]int{true: 1}[inv.Status != "success"] {
					t.Errorf("invocation %d: %d lines in Loki for %d written", i, len(lines), len(inv.Lines))
				}
				checkContext(t, fmt.Sprintf("invocation %d", i), lines, want)
				if tt.report {
					checkReport(t, srv, o.function, inv, lines)
				}
			}
			if d := e2etest.CheckDelivery(t, srv, o.function, append(o.sb.InitLines(), o.lines...), o.start); d.Missing != 0 || d.Duplicated != 0 {
				t.Fatalf("delivery: %s", d)
			}
		})
	}
}

func without(m map[string]string, name string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if k != name {
			out[k] = v
		}
	}
	return out
}

// withoutAlias is the context of a line of no invocation: no INVOKE named
// an alias for it.
func withoutAlias(m map[string]string) map[string]string { return without(m, "function_alias") }

// After a SnapStart restore, the first invocation's lines say so, its
// REPORT carries the restore's duration, and no line says cold_start: the
// init ran when the version was published. Lambda gives a SnapStart
// function no log stream name.
func TestContextAfterASnapStartRestore(t *testing.T) {
	srv := e2etest.Loki(t)
	function := e2etest.FunctionName(t)
	start := time.Now()
	sb := e2etest.StartSandbox(t, sandbox.Config{
		FunctionName: function, Mode: sandbox.ModeSnapStart,
		Env: e2etest.Env(t, srv.PushURL(), "SHIP_PLATFORM_LOGS=true", "AWS_EXECUTION_ENV=AWS_Lambda_java21"),
	})
	if err := sb.Restore(t.Context()); err != nil {
		t.Fatal(err)
	}
	var invokes []sandbox.InvokeResult
	for i := range 2 {
		res, err := sb.Invoke(t.Context(), sandbox.Function{Lines: 2})
		if err != nil {
			t.Fatalf("invoke %d: %v", i, err)
		}
		invokes = append(invokes, res)
	}
	if _, err := sb.Shutdown(t.Context(), "spindown"); err != nil {
		t.Fatal(err)
	}
	warm := map[string]string{"function_version": "$LATEST", "runtime": "java21", "architecture": lambdaArch()}
	restored := map[string]string{"restored": "true"}
	for k, v := range warm {
		restored[k] = v
	}
	byInvocation := linesOf(t, srv, function, start)
	for i, inv := range invokes {
		want := warm
		if i == 0 {
			want = restored
		}
		checkContext(t, fmt.Sprintf("invocation %d", i), byInvocation[inv.RequestID], want)
		checkReport(t, srv, function, inv, byInvocation[inv.RequestID])
	}
}
