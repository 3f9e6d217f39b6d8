package sandbox

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lambda-loki/grafana-loki-extension/internal/freeport"
	"github.com/lambda-loki/grafana-loki-extension/internal/gobuild"
)

// testExtension builds the test extension once and returns a directory
// holding a copy of it under each name.
func testExtension(t *testing.T, names ...string) string {
	t.Helper()
	testExt, err := gobuild.Binary(gobuild.Module + "/sandbox/internal/testext")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data, err := os.ReadFile(testExt)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func freePort(t *testing.T) string {
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(port)
}

// recorded reads the batches the test extension's listener received.
func recorded(t *testing.T, file string) (events []map[string]any) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var batch []map[string]any
		if err := json.Unmarshal(sc.Bytes(), &batch); err != nil {
			t.Fatalf("batch is not a JSON array of events: %v", err)
		}
		events = append(events, batch...)
	}
	return events
}

func types(events []map[string]any) []string {
	var out []string
	for _, e := range events {
		out = append(out, e["type"].(string))
	}
	return out
}

func subscribeBody(port, schema string, timeoutMs int) string {
	return `{"schemaVersion":"` + schema + `","types":["platform","function"],"buffering":{"maxItems":1000,"maxBytes":262144,"timeoutMs":` +
		strconv.Itoa(timeoutMs) + `},"destination":{"protocol":"HTTP","URI":"http://sandbox.localdomain:` + port + `/telemetry"}}`
}

type listening struct {
	cfg    Config
	record string
}

func withListener(t *testing.T, schema string, extra ...string) listening {
	port := freePort(t)
	record := filepath.Join(t.TempDir(), "record")
	return listening{record: record, cfg: Config{
		ExtensionsDir: testExtension(t, "testext"),
		Env:           append([]string{"TESTEXT_LISTEN=" + port, "TESTEXT_RECORD=" + record, "TESTEXT_SUBSCRIBE=" + subscribeBody(port, schema, 25)}, extra...),
	}}
}

// processState waits up to a second for the process to reach state want
// (signals are delivered asynchronously) and returns the state it has.
func processState(t *testing.T, pid int, want byte) byte {
	var st byte
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		// pid (comm) S ...: the state follows the closing parenthesis.
		s := string(data)
		if st = s[strings.LastIndex(s, ")")+2]; st == want {
			break
		}
	}
	return st
}

// docs/lambda-runtime-contract.md#init-and-its-gates and #invoke-and-the-freeze: init gates, the
// freeze (SIGSTOP, no delivery), the
// invocation's events in order, the report only after the thaw, and SHUTDOWN.
func TestLifecycleFreezeAndDelivery(t *testing.T) {
	l := withListener(t, "2022-12-13", "TESTEXT_NEXT_DELAY_MS=150")
	sb, err := Start(t.Context(), l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if sb.InitDuration() <= 0 || !sb.Frozen() {
		t.Fatalf("init %s, frozen %v", sb.InitDuration(), sb.Frozen())
	}
	pid := sb.PIDs()[0]
	if st := processState(t, pid, 'T'); st != 'T' {
		t.Fatalf("after init the extension is in state %c, want T (stopped)", st)
	}
	res, err := sb.Invoke(t.Context(), Function{Lines: 3})
	if err != nil {
		t.Fatal(err)
	}
	if st := processState(t, pid, 'T'); st != 'T' {
		t.Fatalf("after the invoke the extension is in state %c, want T", st)
	}
	time.Sleep(100 * time.Millisecond) // longer than timeoutMs: nothing may arrive while frozen
	got := types(recorded(t, l.record))
	if strings.Contains(strings.Join(got, ","), "platform.report") {
		t.Fatalf("platform.report delivered while frozen: %v", got)
	}
	want := []string{"platform.initStart", "platform.initRuntimeDone", "platform.telemetrySubscription", "platform.initReport", "platform.start", "function", "function", "function", "platform.runtimeDone"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events before the freeze:\n%v\nwant\n%v", got, want)
	}
	if res.PostRuntime < 100*time.Millisecond || res.HeldPastDeadline || len(res.Lines) != 3 {
		t.Fatalf("%+v", res)
	}
	sd, err := sb.Shutdown(t.Context(), "spindown")
	if err != nil || sd.Killed || sd.ExitCode != 0 {
		t.Fatalf("%+v %v", sd, err)
	}
	got = types(recorded(t, l.record))
	if got[len(got)-1] != "platform.report" {
		t.Fatalf("the report was not flushed before SHUTDOWN: %v", got)
	}
	out := sb.ExtensionOutput()
	if !strings.Contains(out, `"eventType":"INVOKE"`) || !strings.Contains(out, `"shutdownReason":"spindown"`) {
		t.Fatalf("events the extension saw: %s", out)
	}
}

// docs/lambda-runtime-contract.md#text-and-json-records: text records carry the
// runtime's prefix and newline; JSON records are objects with schema ≥ 2022-12-13
// and strings with 2022-07-01.
func TestRecordRendering(t *testing.T) {
	tests := []struct {
		format, schema string
		check          func(rec any) bool
	}{
		{"text", "2022-12-13", func(rec any) bool {
			s, ok := rec.(string)
			return ok && strings.HasSuffix(s, "\tINFO\thello\n")
		}},
		{"json", "2022-12-13", func(rec any) bool {
			m, ok := rec.(map[string]any)
			return ok && m["message"] == "hello" && m["level"] == "INFO" && m["timestamp"] != nil
		}},
		{"json", "2022-07-01", func(rec any) bool {
			s, ok := rec.(string)
			return ok && strings.Contains(s, `"message":"hello"`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.format+"/"+tt.schema, func(t *testing.T) {
			l := withListener(t, tt.schema)
			l.cfg.LogFormat = tt.format
			sb, err := Start(t.Context(), l.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer sb.Close()
			res, err := sb.Invoke(t.Context(), Function{Messages: []string{"hello"}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sb.Shutdown(t.Context(), "spindown"); err != nil {
				t.Fatal(err)
			}
			for _, e := range recorded(t, l.record) {
				if e["type"] == "function" {
					if !tt.check(e["record"]) {
						t.Fatalf("record %#v", e["record"])
					}
					if text, _ := json.Marshal(e["record"]); tt.format == "json" && tt.schema != "2022-07-01" && !strings.Contains(res.Lines[0].Text, `"message":"hello"`) {
						t.Fatalf("expected line %q for record %s", res.Lines[0].Text, text)
					}
					return
				}
			}
			t.Fatal("no function record delivered")
		})
	}
}

// docs/lambda-runtime-contract.md#delivery: a failed delivery (non-2xx) is retried
// and nothing is lost.
func TestDeliveryRetriesAfterErrors(t *testing.T) {
	l := withListener(t, "2022-12-13", "TESTEXT_FAIL_FIRST=2")
	sb, err := Start(t.Context(), l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if _, err := sb.Invoke(t.Context(), Function{Lines: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Shutdown(t.Context(), "spindown"); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range recorded(t, l.record) {
		if e["type"] == "function" {
			n++
		}
	}
	if st := sb.Stats(); st.Retries < 2 || n != 5 {
		t.Fatalf("retries %d, function events delivered %d of 5", st.Retries, n)
	}
}

// docs/lambda-runtime-contract.md#delivery: a listener slower than the log rate
// makes the buffer overflow; records are dropped and platform.logsDropped says so.
func TestSlowListenerGetsLogsDropped(t *testing.T) {
	l := withListener(t, "2022-12-13", "TESTEXT_SLOW_MS=300")
	l.cfg.TelemetryBufferBytes = 64 << 10
	sb, err := Start(t.Context(), l.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if _, err := sb.Invoke(t.Context(), Function{Lines: 2000, LineBytes: 200}); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Invoke(t.Context(), Function{Lines: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Shutdown(t.Context(), "spindown"); err != nil {
		t.Fatal(err)
	}
	st := sb.Stats()
	if st.DroppedRecords == 0 || st.LogsDroppedEvents == 0 {
		t.Fatalf("%+v", st)
	}
	if !strings.Contains(strings.Join(types(recorded(t, l.record)), ","), "platform.logsDropped") {
		t.Fatal("no platform.logsDropped delivered")
	}
}

// The freeze is a cut: what an extension wrote before it called /next is
// captured by the time the sandbox is frozen (Start and Invoke return), not
// whenever the pipe's reader gets to it after the thaw. Thousands of lines
// just before /next leave the reader behind when the freeze comes.
func TestFreezeCapturesWhatWasWrittenBeforeNext(t *testing.T) {
	sb, err := Start(t.Context(), Config{ExtensionsDir: testExtension(t, "testext"), Env: []string{"TESTEXT_PRINT_BEFORE_NEXT=5000"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if out := sb.ExtensionOutput(); !strings.Contains(out, "before next 0: line 4999\n") {
		t.Fatalf("frozen after init with the lines before the first /next not all captured; output ends %q", out[max(0, len(out)-100):])
	}
	if _, err := sb.Invoke(t.Context(), Function{Lines: 1}); err != nil {
		t.Fatal(err)
	}
	if out := sb.ExtensionOutput(); !strings.Contains(out, "before next 1: line 4999\n") {
		t.Fatalf("frozen after the invocation with the lines before its /next not all captured; output ends %q", out[max(0, len(out)-100):])
	}
}

// docs/lambda-runtime-contract.md#shutdown: an extension that ignores SHUTDOWN is
// SIGKILLed at the deadline.
func TestShutdownKillsAtTheDeadline(t *testing.T) {
	sb, err := Start(t.Context(), Config{ExtensionsDir: testExtension(t, "testext"), ShutdownTimeout: 300 * time.Millisecond, Env: []string{"TESTEXT_IGNORE_SHUTDOWN=1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	sd, err := sb.Shutdown(t.Context(), "spindown")
	if err != nil || !sd.Killed || sd.Duration < 250*time.Millisecond {
		t.Fatalf("%+v %v", sd, err)
	}
}

// docs/lambda-runtime-contract.md#reset-after-a-failure: any exit outside
// SHUTDOWN, even status 0, is Extension.Crash.
func TestExitBeforeShutdownIsACrash(t *testing.T) {
	sb, err := Start(t.Context(), Config{ExtensionsDir: testExtension(t, "testext"), Env: []string{"TESTEXT_EXIT_EARLY=1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	_, err = sb.Invoke(t.Context(), Function{Lines: 1})
	var extErr *ExtensionError
	if !errors.As(err, &extErr) || extErr.Type != "Extension.Crash" {
		t.Fatalf("want Extension.Crash, got %v", err)
	}
}

// docs/lambda-runtime-contract.md#init-error-and-exit-error: init/error fails the
// init with the reported type.
func TestInitErrorFailsStart(t *testing.T) {
	_, err := Start(t.Context(), Config{ExtensionsDir: testExtension(t, "testext"), Env: []string{"TESTEXT_INIT_ERROR=1"}})
	var extErr *ExtensionError
	if !errors.As(err, &extErr) || extErr.Type != "Extension.InitError" || extErr.ReportedType != "Extension.ConfigInvalid" {
		t.Fatalf("got %v", err)
	}
}

// docs/lambda-runtime-contract.md#registration: a registration whose name matches
// no launched file never arrives for the real file, so init times out.
func TestWrongNameTimesOutInit(t *testing.T) {
	_, err := Start(t.Context(), Config{ExtensionsDir: testExtension(t, "testext"), InitTimeout: 500 * time.Millisecond,
		Env: []string{"TESTEXT_NAME=typo", `TESTEXT_EVENTS=["INVOKE"]`}})
	if err == nil || !strings.Contains(err.Error(), "register") {
		t.Fatalf("got %v", err)
	}
}

// whiteBox is a sandbox with one launched, unregistered extension and no
// process, for testing the API handlers' contract rules directly.
func whiteBox(mode Mode) (*Sandbox, *httptest.Server) {
	s := &Sandbox{cfg: Config{Mode: mode, TelemetryBufferBytes: 1 << 20}, changed: make(chan struct{})}
	s.cfg.defaults()
	s.exts = []*extension{{name: "ext-a", events: make(chan []byte, 1), exited: make(chan struct{})}}
	return s, httptest.NewServer(s.routes())
}

func call(t *testing.T, method, url string, headers map[string]string, body string) (int, map[string]string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if id := resp.Header.Get("Lambda-Extension-Identifier"); id != "" {
		out = map[string]string{"id": id}
	}
	return resp.StatusCode, out
}

// docs/lambda-runtime-contract.md#error-answers: RAPID's error table for register.
func TestRegisterErrors(t *testing.T) {
	tests := []struct {
		name      string
		mode      Mode
		closed    bool
		header    string
		body      string
		twice     bool
		wantCode  int
		wantError string
	}{
		{"ok", ModeOnDemand, false, "ext-a", `{"events":["INVOKE","SHUTDOWN"]}`, false, 200, ""},
		{"empty name", ModeOnDemand, false, "", `{}`, false, 403, "Extension.InvalidExtensionName"},
		{"bad JSON", ModeOnDemand, false, "ext-a", `{`, false, 403, "InvalidRequestFormat"},
		{"bad event", ModeOnDemand, false, "ext-a", `{"events":["RESTORE"]}`, false, 403, "Extension.InvalidEventType"},
		{"internal with SHUTDOWN", ModeOnDemand, false, "not-a-file", `{"events":["SHUTDOWN"]}`, false, 403, "Extension.InvalidEventType"},
		{"internal after close", ModeOnDemand, true, "not-a-file", `{"events":["INVOKE"]}`, false, 403, "Extension.RegistrationClosed"},
		{"double register", ModeOnDemand, false, "ext-a", `{"events":["INVOKE"]}`, true, 403, "Extension.InvalidExtensionState"},
		{"configurationKeys", ModeOnDemand, false, "ext-a", `{"configurationKeys":["a"]}`, false, 403, "InvalidRequestFormat"},
		{"INVOKE on Managed Instances", ModeManagedInstances, false, "ext-a", `{"events":["INVOKE","SHUTDOWN"]}`, false, 403, "Extension.InvalidEventType"},
		{"SHUTDOWN only on Managed Instances", ModeManagedInstances, false, "ext-a", `{"events":["SHUTDOWN"]}`, false, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, srv := whiteBox(tt.mode)
			defer srv.Close()
			s.registrationClosed = tt.closed
			url := srv.URL + "/2020-01-01/extension/register"
			if tt.twice {
				call(t, http.MethodPost, url, map[string]string{"Lambda-Extension-Name": tt.header}, tt.body)
			}
			code, body := call(t, http.MethodPost, url, map[string]string{"Lambda-Extension-Name": tt.header}, tt.body)
			if code != tt.wantCode || body["errorType"] != tt.wantError {
				t.Fatalf("got %d %v", code, body)
			}
		})
	}
}

// docs/lambda-runtime-contract.md#error-answers and #subscribe: identifier checks,
// error reports, and subscription rules.
func TestIdentifiedCallsAndSubscription(t *testing.T) {
	good := `{"schemaVersion":"2022-12-13","types":["platform"],"destination":{"protocol":"HTTP","URI":"http://sandbox:4323"}}`
	tests := []struct {
		name      string
		mode      Mode
		prepare   func(s *Sandbox)
		method    string
		path      string
		id        string // "" none, "valid", or a literal
		headers   map[string]string
		body      string
		wantCode  int
		wantError string
	}{
		{"next without identifier", ModeOnDemand, nil, "GET", "/2020-01-01/extension/event/next", "", nil, "", 403, "Extension.MissingExtensionIdentifier"},
		{"next with a non-UUID", ModeOnDemand, nil, "GET", "/2020-01-01/extension/event/next", "xyz", nil, "", 403, "Extension.InvalidExtensionIdentifier"},
		{"next with an unknown UUID", ModeOnDemand, nil, "GET", "/2020-01-01/extension/event/next", uuid.NewString(), nil, "", 403, "Extension.UnknownExtensionIdentifier"},
		{"next failed by Config.NextFailures", ModeOnDemand, func(s *Sandbox) { s.cfg.NextFailures = func(string, int) int { return 500 } }, "GET", "/2020-01-01/extension/event/next", "valid", nil, "", 500, "InternalServerError"},
		{"init/error without type header", ModeOnDemand, nil, "POST", "/2020-01-01/extension/init/error", "valid", nil, "", 403, "Extension.MissingHeader"},
		{"init/error", ModeOnDemand, nil, "POST", "/2020-01-01/extension/init/error", "valid", map[string]string{"Lambda-Extension-Function-Error-Type": "Extension.X"}, `{"errorMessage":"m"}`, 202, ""},
		{"init/error after the first next", ModeOnDemand, func(s *Sandbox) { s.exts[0].state = stateRunning }, "POST", "/2020-01-01/extension/init/error", "valid", map[string]string{"Lambda-Extension-Function-Error-Type": "Extension.X"}, ``, 403, "Extension.InvalidExtensionState"},
		{"exit/error while running", ModeOnDemand, func(s *Sandbox) { s.exts[0].state = stateRunning }, "POST", "/2020-01-01/extension/exit/error", "valid", map[string]string{"Lambda-Extension-Function-Error-Type": "Extension.X"}, ``, 202, ""},
		{"subscribe", ModeOnDemand, nil, "PUT", "/2022-07-01/telemetry", "valid", nil, good, 200, ""},
		{"subscribe on another path version", ModeOnDemand, nil, "PUT", "/2025-01-29/telemetry", "valid", nil, good, 404, ""},
		{"subscribe without identifier", ModeOnDemand, nil, "PUT", "/2022-07-01/telemetry", "", nil, good, 403, "Extension.MissingExtensionIdentifier"},
		{"subscribe after init", ModeOnDemand, func(s *Sandbox) { s.subscriptionClosed = true }, "PUT", "/2022-07-01/telemetry", "valid", nil, good, 403, "Telemetry.SubscriptionClosed"},
		{"subscribe to a stub", ModeOnDemand, func(s *Sandbox) { s.cfg.TelemetryNotSupported = true }, "PUT", "/2022-07-01/telemetry", "valid", nil, good, 202, "Telemetry.NotSupported"},
		{"unknown schema", ModeOnDemand, nil, "PUT", "/2022-07-01/telemetry", "valid", nil, strings.Replace(good, "2022-12-13", "2021-01-01", 1), 400, "ValidationError"},
		{"old schema on Managed Instances", ModeManagedInstances, nil, "PUT", "/2022-07-01/telemetry", "valid", nil, good, 400, "ValidationError"},
		{"no types", ModeOnDemand, nil, "PUT", "/2022-07-01/telemetry", "valid", nil, strings.Replace(good, `["platform"]`, `[]`, 1), 400, "ValidationError"},
		{"maxItems too small", ModeOnDemand, nil, "PUT", "/2022-07-01/telemetry", "valid", nil, strings.Replace(good, `"destination"`, `"buffering":{"maxItems":10},"destination"`, 1), 400, "ValidationError"},
		{"timeoutMs too small", ModeOnDemand, nil, "PUT", "/2022-07-01/telemetry", "valid", nil, strings.Replace(good, `"destination"`, `"buffering":{"timeoutMs":5},"destination"`, 1), 400, "ValidationError"},
		{"host not sandbox", ModeOnDemand, nil, "PUT", "/2022-07-01/telemetry", "valid", nil, strings.Replace(good, "sandbox:4323", "example.com:4323", 1), 400, "ValidationError"},
		{"no port", ModeOnDemand, nil, "PUT", "/2022-07-01/telemetry", "valid", nil, strings.Replace(good, "sandbox:4323", "sandbox", 1), 400, "ValidationError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, srv := whiteBox(tt.mode)
			defer srv.Close()
			defer func() {
				for _, sub := range s.subs {
					sub.close()
				}
			}()
			_, reg := call(t, http.MethodPost, srv.URL+"/2020-01-01/extension/register", map[string]string{"Lambda-Extension-Name": "ext-a"}, `{"events":["SHUTDOWN"]}`)
			if tt.prepare != nil {
				tt.prepare(s)
			}
			headers := map[string]string{}
			for k, v := range tt.headers {
				headers[k] = v
			}
			switch tt.id {
			case "":
			case "valid":
				headers["Lambda-Extension-Identifier"] = reg["id"]
			default:
				headers["Lambda-Extension-Identifier"] = tt.id
			}
			code, body := call(t, tt.method, srv.URL+tt.path, headers, tt.body)
			if code != tt.wantCode || body["errorType"] != tt.wantError {
				t.Fatalf("got %d %v", code, body)
			}
		})
	}
}
