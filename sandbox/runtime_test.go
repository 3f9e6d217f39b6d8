package sandbox

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/gobuild"
	"github.com/lambda-loki/grafana-loki-extension/internal/runtimes"
)

// testRuntime is the test runtime process (sandbox/internal/testruntime)
// as a Function, with extra KEY=value settings.
func testRuntime(t *testing.T, env ...string) *runtimes.Function {
	t.Helper()
	bin, err := gobuild.Binary(gobuild.Module + "/sandbox/internal/testruntime")
	if err != nil {
		t.Fatal(err)
	}
	return &runtimes.Function{Name: "testruntime", Runtime: "go", Command: []string{bin}, Dir: t.TempDir(), Handler: "bootstrap", Env: env}
}

func payload(t *testing.T, ev map[string]any) []byte {
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// seen is what the test runtime answers: the /next headers and its environment.
type seen struct {
	Headers http.Header       `json:"headers"`
	Env     map[string]string `json:"env"`
}

func answerOf(t *testing.T, res InvokeResult) seen {
	t.Helper()
	var s seen
	if err := json.Unmarshal(res.Response, &s); err != nil {
		t.Fatalf("response %q: %v", res.Response, err)
	}
	return s
}

// docs/lambda-runtime-contract.md#runtime-api: /next answers with the event
// and Lambda's headers (the trace ID only under active tracing, no empty
// client context or Cognito identity), the runtime gets Lambda's
// environment, its output becomes function records before runtimeDone, and
// it is frozen with the extensions.
func TestRuntimeProcessInvocation(t *testing.T) {
	for _, tracing := range []bool{true, false} {
		t.Run("tracing="+strconv.FormatBool(tracing), func(t *testing.T) {
			l := withListener(t, "2022-12-13")
			l.cfg.Runtime = testRuntime(t, "TESTRT_EXTRA=x")
			l.cfg.ActiveTracing = tracing
			sb, err := Start(t.Context(), l.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer sb.Close()
			if st := processState(t, sb.RuntimePID(), 'T'); st != 'T' {
				t.Fatalf("after init the runtime is in state %c, want T", st)
			}
			res, err := sb.Invoke(t.Context(), Function{Payload: payload(t, map[string]any{"lines": []string{"hello", "world"}})})
			if err != nil {
				t.Fatal(err)
			}
			a := answerOf(t, res)
			h := a.Headers
			wantTrace := ""
			if tracing {
				wantTrace = res.TraceHeader
			}
			if h.Get("Lambda-Runtime-Aws-Request-Id") != res.RequestID || h.Get("Lambda-Runtime-Deadline-Ms") != strconv.FormatInt(res.Deadline.UnixMilli(), 10) ||
				h.Get("Lambda-Runtime-Invoked-Function-Arn") != "arn:aws:lambda:us-east-1:123456789012:function:fn" ||
				h.Get("Lambda-Runtime-Trace-Id") != wantTrace || (tracing && wantTrace == "") || h.Get("Content-Type") != "application/json" {
				t.Fatalf("headers %v (request %s, deadline %d, trace %q)", h, res.RequestID, res.Deadline.UnixMilli(), res.TraceHeader)
			}
			for _, k := range []string{"Lambda-Runtime-Client-Context", "Lambda-Runtime-Cognito-Identity"} {
				if _, ok := h[k]; ok {
					t.Fatalf("empty header %s sent", k)
				}
			}
			e := a.Env
			if e["_HANDLER"] != "bootstrap" || e["LAMBDA_TASK_ROOT"] != l.cfg.Runtime.Dir || e["AWS_LAMBDA_LOG_FORMAT"] != "Text" || e["TZ"] != ":UTC" ||
				e["_LAMBDA_TELEMETRY_LOG_FD"] != "3" || e["TESTRT_EXTRA"] != "x" || e["AWS_LAMBDA_FUNCTION_NAME"] != "fn" ||
				e["AWS_LAMBDA_LOG_GROUP_NAME"] != "/aws/lambda/fn" || e["AWS_LAMBDA_LOG_STREAM_NAME"] == "" || e["AWS_LAMBDA_INITIALIZATION_TYPE"] != "on-demand" {
				t.Fatalf("environment %v", e)
			}
			if _, ok := e["AWS_EXECUTION_ENV"]; ok {
				t.Fatal("AWS_EXECUTION_ENV set for an OS-only runtime")
			}
			if _, ok := e["AWS_LAMBDA_LOG_LEVEL"]; ok {
				t.Fatal("AWS_LAMBDA_LOG_LEVEL set with the text format")
			}
			if len(res.Lines) != 2 || res.Lines[0].Text != "hello" || res.Lines[1].Text != "world" || res.Status != "success" {
				t.Fatalf("%+v", res)
			}
			if st := processState(t, sb.RuntimePID(), 'T'); st != 'T' {
				t.Fatalf("after the invoke the runtime is in state %c, want T", st)
			}
			if _, err := sb.Shutdown(t.Context(), "spindown"); err != nil {
				t.Fatal(err)
			}
			// The subscription's event comes whenever the extension subscribes.
			got := strings.ReplaceAll(strings.Join(types(recorded(t, l.record)), ","), "platform.telemetrySubscription,", "")
			want := "platform.initStart,platform.initRuntimeDone,platform.initReport,platform.start,function,function,platform.runtimeDone,platform.report"
			if got != want {
				t.Fatalf("events\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// docs/lambda-runtime-contract.md#init-and-its-gates: the init waits for
// the runtime's first /next; what it printed before is the init's.
func TestRuntimeInitWaitsForTheFirstNext(t *testing.T) {
	l := withListener(t, "2022-12-13")
	l.cfg.Runtime = testRuntime(t, "TESTRT_INIT_SLEEP_MS=300", "TESTRT_INIT_LINES=loading|loaded")
	sb, err := Start(t.Context(), l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if sb.InitDuration() < 300*time.Millisecond {
		t.Fatalf("init took %s, the runtime's first /next came after 300 ms", sb.InitDuration())
	}
	lines := sb.InitLines()
	if len(lines) != 2 || lines[0].Text != "loading" || lines[1].Text != "loaded" {
		t.Fatalf("init lines %+v", lines)
	}
}

// docs/lambda-runtime-contract.md#runtime-api: an init error reported
// through /init/error, or an exit before the first /next, fails the init.
func TestRuntimeInitFailure(t *testing.T) {
	tests := []struct {
		init, wantType, wantReported string
	}{
		{"error", "Runtime.InitError", "Runtime.ConfigError"},
		{"exit", "Runtime.ExitError", ""},
	}
	for _, tt := range tests {
		t.Run(tt.init, func(t *testing.T) {
			l := withListener(t, "2022-12-13")
			l.cfg.Runtime = testRuntime(t, "TESTRT_INIT="+tt.init)
			_, err := Start(t.Context(), l.cfg)
			var rerr *RuntimeError
			if !errors.As(err, &rerr) || rerr.Type != tt.wantType || rerr.ReportedType != tt.wantReported {
				t.Fatalf("Start: %v", err)
			}
			if tt.init == "error" && rerr.Message != "bad handler" {
				t.Fatalf("message %q", rerr.Message)
			}
		})
	}
}

// docs/lambda-runtime-contract.md#reset-after-a-failure: /invocation/error
// is a handled error (no reset); a deadline passed times the invocation
// out, an exit fails it, and both reset: the next invocation runs in a new
// runtime process.
func TestRuntimeOutcomes(t *testing.T) {
	l := withListener(t, "2022-12-13")
	l.cfg.Runtime = testRuntime(t)
	l.cfg.FunctionTimeout = time.Second
	sb, err := Start(t.Context(), l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	tests := []struct {
		action, status, reset string
	}{
		{"fail", "error", ""}, {"ok", "success", ""}, {"timeout", "timeout", "timeout"}, {"ok", "success", ""},
		{"exit", "failure", "failure"}, {"ok", "success", ""},
	}
	for i, tt := range tests {
		pid := sb.RuntimePID()
		res, err := sb.Invoke(t.Context(), Function{Payload: payload(t, map[string]any{"action": tt.action, "lines": []string{"before " + tt.action}})})
		if err != nil {
			t.Fatalf("%d %s: %v", i, tt.action, err)
		}
		reset := ""
		if res.Reset != nil {
			reset = res.Reset.Reason
		}
		if res.Status != tt.status || reset != tt.reset || len(res.Lines) != 1 || res.Lines[0].Text != "before "+tt.action {
			t.Fatalf("%d %s: status %s, reset %q, lines %+v", i, tt.action, res.Status, reset, res.Lines)
		}
		if tt.action == "fail" && (!strings.Contains(string(res.Response), "boom") || res.Report["errorType"] != "Handled.Boom") {
			t.Fatalf("error invocation: response %q, report %v", res.Response, res.Report)
		}
		if tt.action == "ok" && i > 0 && tests[i-1].reset != "" && sb.RuntimePID() == pid {
			t.Fatalf("%d: the invocation after a reset ran in the old runtime process", i)
		}
	}
	if _, err := sb.Shutdown(t.Context(), "spindown"); err != nil {
		t.Fatal(err)
	}
	var statuses []string
	for _, e := range eventsOf(recorded(t, l.record), "platform.runtimeDone") {
		rec := e["record"].(map[string]any)
		statuses = append(statuses, rec["status"].(string)+"/"+func() string { s, _ := rec["errorType"].(string); return s }())
	}
	if got := strings.Join(statuses, ","); got != "error/Handled.Boom,success/,timeout/Sandbox.Timeout,success/,failure/Runtime.ExitError,success/" {
		t.Fatalf("runtimeDone statuses %s", got)
	}
}

// docs/lambda-runtime-contract.md#runtime-api: a response over 6 MB is
// refused with 413 and fails the invocation. (On Managed Instances, never
// frozen, the runtime prints the answer it got at once.)
func TestRuntimeResponseTooLarge(t *testing.T) {
	l := withListener(t, "2025-01-29", `TESTEXT_EVENTS=["SHUTDOWN"]`)
	l.cfg.Mode = ModeManagedInstances
	l.cfg.Runtime = testRuntime(t)
	sb, err := Start(t.Context(), l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	res, err := sb.Invoke(t.Context(), Function{Payload: payload(t, map[string]any{"action": "big"})})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "error" || res.Report["errorType"] != "Function.ResponseSizeTooLarge" || res.Response != nil {
		t.Fatalf("status %s, report %v, %d bytes of response", res.Status, res.Report, len(res.Response))
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, e := range eventsOf(recorded(t, l.record), "function") {
			if rec, _ := e["record"].(string); strings.Contains(rec, "413 Request Entity Too Large") {
				return
			}
		}
	}
	t.Fatalf("the runtime was not answered 413: %v", eventsOf(recorded(t, l.record), "function"))
}

// runtimeCall makes one Runtime API request and returns its status and errorType.
func runtimeCall(t *testing.T, sb *Sandbox, method, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+sb.RuntimeAPI()+"/2018-06-01/runtime"+path, strings.NewReader(`{}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		ErrorType string `json:"errorType"`
	}
	data, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(data, &body)
	return resp.StatusCode, body.ErrorType
}

// docs/lambda-runtime-contract.md#runtime-api: RAPID's answers to calls the
// runtime's state does not allow (403 InvalidStateTransition) and to an ID
// it does not hold (400 InvalidRequestID).
func TestRuntimeAPIErrors(t *testing.T) {
	l := withListener(t, "2022-12-13")
	l.cfg.Runtime = testRuntime(t)
	sb, err := Start(t.Context(), l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	release := filepath.Join(t.TempDir(), "release")
	var res InvokeResult
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, err = sb.Invoke(t.Context(), Function{Payload: payload(t, map[string]any{"action": "wait", "waitFor": release})})
	}()
	// Wait until the runtime holds the invocation.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		sb.mu.Lock()
		holding := sb.rt != nil && len(sb.rt.inflight) == 1
		sb.mu.Unlock()
		if holding || time.Now().After(deadline) {
			break
		}
	}
	tests := []struct {
		method, path string
		status       int
		errorType    string
	}{
		{"GET", "/invocation/next", 403, "InvalidStateTransition"},
		{"POST", "/invocation/00000000-0000-0000-0000-000000000000/response", 400, "InvalidRequestID"},
		{"POST", "/invocation/00000000-0000-0000-0000-000000000000/error", 400, "InvalidRequestID"},
		{"POST", "/init/error", 403, "InvalidStateTransition"},
		{"GET", "/restore/next", 403, "InvalidStateTransition"},
	}
	for _, tt := range tests {
		if status, typ := runtimeCall(t, sb, tt.method, tt.path); status != tt.status || typ != tt.errorType {
			t.Errorf("while invoking, %s %s: %d %s, want %d %s", tt.method, tt.path, status, typ, tt.status, tt.errorType)
		}
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err != nil || res.Status != "success" {
		t.Fatalf("%v %+v", err, res)
	}
	// Answered already, and no invocation held: a state error.
	if status, typ := runtimeCall(t, sb, "POST", "/invocation/"+res.RequestID+"/response"); status != 403 || typ != "InvalidStateTransition" {
		t.Errorf("a second answer: %d %s", status, typ)
	}
}

// docs/lambda-runtime-contract.md#the-telemetry-log-fd and
// #text-and-json-records: a frame is one record whatever its newlines;
// with the JSON format an object is shipped as the record, anything else
// wrapped with its time, level and message.
func TestRuntimeRecords(t *testing.T) {
	multi := "2026-01-01T00:00:00.000Z\tid\tINFO\tmulti line\nsecond line\n"
	tests := []struct {
		format string
		frames []map[string]any
		lines  []string
		want   []string // the records, as JSON
	}{
		{"text", []map[string]any{{"message": multi, "level": 0x0c}}, []string{"plain"},
			[]string{`"plain\n"`, mustJSON(multi)}},
		{"json", []map[string]any{{"json": true, "level": 0x10, "message": `{"level":"WARN","message":"two\nlines"}` + "\n"}, {"level": 0x14, "message": "text frame\n"}},
			[]string{`{"level":"INFO", "msg":"obj"}`, "plain"},
			[]string{`{"level":"INFO", "msg":"obj"}`, `{"level":"INFO","message":"plain"}`, `{"level":"WARN","message":"two\nlines"}`, `{"level":"ERROR","message":"text frame"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			l := withListener(t, "2022-12-13")
			l.cfg.Runtime = testRuntime(t)
			l.cfg.LogFormat = tt.format
			sb, err := Start(t.Context(), l.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer sb.Close()
			res, err := sb.Invoke(t.Context(), Function{Payload: payload(t, map[string]any{"lines": tt.lines, "frames": tt.frames})})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sb.Shutdown(t.Context(), "spindown"); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range eventsOf(recorded(t, l.record), "function") {
				rec := e["record"]
				if m, ok := rec.(map[string]any); ok {
					delete(m, "timestamp") // the capture's time
				}
				got = append(got, mustJSON(rec))
			}
			var want []string
			for _, w := range tt.want {
				var v any
				if err := json.Unmarshal([]byte(w), &v); err != nil {
					t.Fatal(err)
				}
				want = append(want, mustJSON(v))
			}
			// stdout and the fd are two pipes: their order is not kept.
			if strings.Join(sortedCopy(got), "\n") != strings.Join(sortedCopy(want), "\n") {
				t.Fatalf("records\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if len(res.Lines) != len(tt.want) {
				t.Fatalf("lines %+v", res.Lines)
			}
		})
	}
}

func mustJSON(v any) string {
	data, _ := json.Marshal(v)
	return string(data)
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// docs/lambda-runtime-contract.md#managed-instances and #snapstart: the
// runtime process serves Managed Instances (never frozen, concurrent
// invocations queued to its /next) and SnapStart (frozen in the snapshot,
// thawed at the restore).
func TestRuntimeModes(t *testing.T) {
	t.Run("managed instances", func(t *testing.T) {
		l := withListener(t, "2025-01-29", `TESTEXT_EVENTS=["SHUTDOWN"]`)
		l.cfg.Mode = ModeManagedInstances
		l.cfg.LogFormat = "json"
		l.cfg.LogLevel = "debug"
		l.cfg.Runtime = testRuntime(t)
		sb, err := Start(t.Context(), l.cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Close()
		var wg sync.WaitGroup
		results := make([]InvokeResult, 3)
		errs := make([]error, 3)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = sb.Invoke(t.Context(), Function{Payload: payload(t, map[string]any{"lines": []string{"line"}})})
			}()
		}
		wg.Wait()
		for i, res := range results {
			if errs[i] != nil || res.Status != "success" || answerOf(t, res).Headers.Get("Lambda-Runtime-Aws-Request-Id") != res.RequestID {
				t.Fatalf("%d: %v %+v", i, errs[i], res)
			}
		}
		e := answerOf(t, results[0]).Env
		if e["AWS_LAMBDA_LOG_FORMAT"] != "JSON" || e["AWS_LAMBDA_LOG_LEVEL"] != "DEBUG" || e["AWS_LAMBDA_INITIALIZATION_TYPE"] != "lambda-managed-instances" {
			t.Fatalf("environment %v", e)
		}
		if processState(t, sb.RuntimePID(), 'S') == 'T' {
			t.Fatal("the runtime is frozen on Managed Instances")
		}
	})
	t.Run("snapstart", func(t *testing.T) {
		l := withListener(t, "2022-12-13")
		l.cfg.Mode = ModeSnapStart
		l.cfg.Runtime = testRuntime(t)
		sb, err := Start(t.Context(), l.cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Close()
		if st := processState(t, sb.RuntimePID(), 'T'); st != 'T' {
			t.Fatalf("the snapshot's runtime is in state %c, want T", st)
		}
		res, err := sb.Invoke(t.Context(), Function{Payload: payload(t, map[string]any{"lines": []string{"restored"}})})
		if err != nil || res.Status != "success" || len(res.Lines) != 1 {
			t.Fatalf("%v %+v", err, res)
		}
		e := answerOf(t, res).Env
		if _, ok := e["AWS_LAMBDA_LOG_STREAM_NAME"]; ok || e["AWS_LAMBDA_INITIALIZATION_TYPE"] != "snap-start" {
			t.Fatalf("environment %v", e)
		}
	})
}
