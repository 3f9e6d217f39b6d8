package lifecycle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/config"
	"github.com/lambda-loki/grafana-loki-extension/extensionApi"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokitest"
	"github.com/lambda-loki/grafana-loki-extension/internal/outputbuf"
	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/telemetryApi"
	"github.com/sirupsen/logrus"
)

// The lifecycle tests' stand-ins: the Extensions API and the Telemetry
// API's subscribe call of one sandbox (fakeAPI), a Loki behind the
// outbox's Pusher interface (lokitest.Pusher), and a harness that runs the
// real extension between them, the real listener fed by the test.

// extensionID is what the fake API hands out at registration and expects
// on every later call.
const extensionID = "6f7b0c1e-0000-4000-8000-000000000001"

// nextCall is one GET /event/next as the fake API saw it.
type nextCall struct {
	arrived time.Time
	// answered is zero while the call waits for an event.
	answered time.Time
}

// reportedError is one init/error or exit/error call.
type reportedError struct {
	op, errorType, message string
	at                     time.Time
}

// fakeAPI answers the Extensions API (register, next, init/error,
// exit/error) and the Telemetry API's subscribe, as the contract describes
// them (docs/lambda-runtime-contract.md#extensions-api). /next hands out the
// events the test queued, in order, and waits while there are none; the
// calls chosen with failNext get a 500 instead, without using up an event.
type fakeAPI struct {
	srv  *httptest.Server
	addr string // host:port, as AWS_LAMBDA_RUNTIME_API
	// events are handed out by /next; closing releases the calls waiting.
	events  chan extensionApi.Event
	closing chan struct{}

	mu sync.Mutex
	// fail holds the /next calls (1 is the first) answered with a 500.
	fail            map[int]bool
	subscribeStatus int
	calls           []nextCall
	subscriptions   []telemetryApi.Subscription
	reported        []reportedError
}

// newFakeAPI starts the API; subscribeStatus is what PUT /telemetry answers
// (202: a local stub that never delivers). It stops with the test.
func newFakeAPI(t *testing.T, subscribeStatus int) *fakeAPI {
	a := &fakeAPI{
		events: make(chan extensionApi.Event, 16), closing: make(chan struct{}),
		fail: map[int]bool{}, subscribeStatus: subscribeStatus,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2020-01-01/extension/register", a.register)
	mux.HandleFunc("GET /2020-01-01/extension/event/next", a.next)
	mux.HandleFunc("POST /2020-01-01/extension/init/error", a.reportError("init/error"))
	mux.HandleFunc("POST /2020-01-01/extension/exit/error", a.reportError("exit/error"))
	mux.HandleFunc("PUT /2022-07-01/telemetry", a.subscribe)
	a.srv = httptest.NewServer(mux)
	a.addr = strings.TrimPrefix(a.srv.URL, "http://")
	t.Cleanup(func() {
		// A call still waiting in /next must return, or Close would wait
		// for it.
		close(a.closing)
		a.srv.Close()
	})
	return a
}

// queue adds events for /next to hand out.
func (a *fakeAPI) queue(evs ...extensionApi.Event) {
	for _, ev := range evs {
		a.events <- ev
	}
}

// failNext makes the given /next calls (1 is the first) answer 500.
func (a *fakeAPI) failNext(calls ...int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range calls {
		a.fail[n] = true
	}
}

// identified answers 403, as RAPID does, to a call without the identifier
// given at registration: the client must have registered first.
func identified(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Lambda-Extension-Identifier") != extensionID {
		apiError(w, http.StatusForbidden, "Extension.UnknownExtensionIdentifier")
		return false
	}
	return true
}

func apiError(w http.ResponseWriter, status int, errorType string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"errorType": errorType, "errorMessage": errorType})
}

func (a *fakeAPI) register(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Lambda-Extension-Name") == "" {
		apiError(w, http.StatusForbidden, "Extension.MissingHeader")
		return
	}
	w.Header().Set("Lambda-Extension-Identifier", extensionID)
	_ = json.NewEncoder(w).Encode(extensionApi.RegisterResponse{FunctionName: "fn", FunctionVersion: "$LATEST", Handler: "h"})
}

func (a *fakeAPI) next(w http.ResponseWriter, r *http.Request) {
	if !identified(w, r) {
		return
	}
	a.mu.Lock()
	n := len(a.calls)
	a.calls = append(a.calls, nextCall{arrived: time.Now()})
	fail := a.fail[n+1]
	if fail {
		a.calls[n].answered = time.Now()
	}
	a.mu.Unlock()
	if fail {
		apiError(w, http.StatusInternalServerError, "InternalServerError")
		return
	}
	var ev extensionApi.Event
	select {
	case ev = <-a.events:
	case <-r.Context().Done():
		return
	case <-a.closing:
		return
	}
	a.mu.Lock()
	a.calls[n].answered = time.Now()
	a.mu.Unlock()
	_ = json.NewEncoder(w).Encode(ev)
}

func (a *fakeAPI) reportError(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !identified(w, r) {
			return
		}
		var body struct {
			ErrorMessage string `json:"errorMessage"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		a.mu.Lock()
		a.reported = append(a.reported, reportedError{op: op, errorType: r.Header.Get("Lambda-Extension-Function-Error-Type"), message: body.ErrorMessage, at: time.Now()})
		a.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"status":"OK"}`)
	}
}

func (a *fakeAPI) subscribe(w http.ResponseWriter, r *http.Request) {
	if !identified(w, r) {
		return
	}
	var sub telemetryApi.Subscription
	if err := json.NewDecoder(r.Body).Decode(&sub); err != nil {
		apiError(w, http.StatusBadRequest, "ValidationError")
		return
	}
	a.mu.Lock()
	a.subscriptions = append(a.subscriptions, sub)
	status := a.subscribeStatus
	a.mu.Unlock()
	if status == http.StatusAccepted {
		apiError(w, status, "Telemetry.NotSupported")
		return
	}
	_, _ = io.WriteString(w, `"OK"`)
}

// awaitCall waits until /next call n (1 is the first) has arrived, and
// answered too when answered is set, and returns it.
func (a *fakeAPI) awaitCall(t *testing.T, n int, answered bool) nextCall {
	t.Helper()
	var c nextCall
	eventually(t, fmt.Sprintf("/next call %d (answered: %v)", n, answered), func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		if len(a.calls) < n {
			return false
		}
		c = a.calls[n-1]
		return !answered || !c.answered.IsZero()
	})
	return c
}

func (a *fakeAPI) nextCalls() []nextCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

func (a *fakeAPI) errorsReported() []reportedError {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.reported)
}

func (a *fakeAPI) subscribed() []telemetryApi.Subscription {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.subscriptions)
}

// eventually polls cond until it holds, failing the test after a few
// seconds: far more than any path under test takes when it works.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// testLog returns a logger writing into a buffer, shown when the test fails.
func testLog(t *testing.T) (*logrus.Logger, *outputbuf.Buffer) {
	buf := &outputbuf.Buffer{}
	log := logrus.New()
	log.SetOutput(buf)
	log.SetLevel(logrus.DebugLevel)
	log.SetFormatter(&logrus.TextFormatter{DisableColors: true, DisableTimestamp: true})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("extension log:\n%s", buf)
		}
	})
	return log, buf
}

// registered returns a client registered with the fake API, as run() does
// before anything else.
func registered(t *testing.T, a *fakeAPI) *extensionApi.Client {
	t.Helper()
	ext := extensionApi.NewClient(a.addr)
	if _, err := ext.Register(t.Context(), "grafana-loki-extension", []extensionApi.EventType{extensionApi.Invoke, extensionApi.Shutdown}); err != nil {
		t.Fatal(err)
	}
	return ext
}

// testConfig is a configuration for fast tests: small budgets and bounds,
// the listener on a free port of every interface, no spill file.
func testConfig(runtimeAPI string) config.Config {
	return config.Config{
		FunctionName: "fn",
		RuntimeAPI:   runtimeAPI,
		SAMLocal:     true,
		ListenerPort: 0,
		Loki: loki.Config{
			URL: "http://loki.invalid/loki/api/v1/push", Labels: map[string]string{"function": "fn"},
			RequestTimeout: 200 * time.Millisecond, MaxLineBytes: 64 << 10, MaxRequestBytes: 1 << 20,
		},
		DispatchMinBatchSize: 1,
		Flush:                config.FlushStrategy{Mode: config.FlushEnd},
		FlushTimeout:         400 * time.Millisecond,
		Buffering:            config.Buffering{MaxItems: 1000, MaxBytes: 262_144, TimeoutMs: 25},
		QueueMaxEntries:      10_000,
		QueueMaxBytes:        4 << 20,
		SpillMaxBytes:        0,
		OutageRetryMax:       time.Second,
		LogLevel:             logrus.DebugLevel,
	}
}

// harness is the real extension running against the fakes.
type harness struct {
	api    *fakeAPI
	pusher *lokitest.Pusher
	x      *extension
	log    *outputbuf.Buffer
	// telemetryURL is the listener's address, where the test posts batches.
	telemetryURL string
	code         int
	done         chan struct{} // closed when run has returned code
}

// startExtension builds the extension as run() does, with tweak applied to
// testConfig, and runs its lifecycle until SHUTDOWN or the end of the test.
// subscribeStatus is the Telemetry API's answer to the subscription.
func startExtension(t *testing.T, subscribeStatus int, tweak func(*config.Config)) *harness {
	t.Helper()
	h := &harness{api: newFakeAPI(t, subscribeStatus), pusher: &lokitest.Pusher{}, done: make(chan struct{})}
	cfg := testConfig(h.api.addr)
	if tweak != nil {
		tweak(&cfg)
	}
	var log *logrus.Logger
	log, h.log = testLog(t)
	ext := registered(t, h.api)
	x, err := newExtension(t.Context(), cfg, ext, log, h.pusher, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.x = x
	go func() {
		defer close(h.done)
		h.code = x.run(t.Context())
	}()
	t.Cleanup(func() {
		// t.Context() has ended: run drains, stops the listener and
		// returns.
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			t.Error("the extension did not return after the test ended")
		}
	})
	port := x.listener.Addr().(*net.TCPAddr).Port
	h.telemetryURL = fmt.Sprintf("http://127.0.0.1:%d/", port)
	if subs := h.api.subscribed(); len(subs) != 1 || subs[0].Destination.URI != fmt.Sprintf("http://sandbox.localdomain:%d/", port) {
		t.Fatalf("subscriptions %+v, want one to the listener's port %d", subs, port)
	}
	return h
}

// wait returns run's return code.
func (h *harness) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-h.done:
		return h.code
	case <-time.After(5 * time.Second):
		t.Fatal("the extension did not return")
		return 0
	}
}

// post sends one Telemetry API batch to the listener, as Lambda does.
func (h *harness) post(t *testing.T, events ...telemetryApi.Event) {
	t.Helper()
	body, err := json.Marshal(events)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(h.telemetryURL, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("posting a batch: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("posting a batch: status %d", resp.StatusCode)
	}
}

// Telemetry API events (docs/lambda-runtime-contract.md#event-catalogue).

func telemetryEvent(typ string, record any) telemetryApi.Event {
	raw, err := json.Marshal(record)
	if err != nil {
		panic(err)
	}
	return telemetryApi.Event{Time: time.Now().UTC().Format(time.RFC3339Nano), Type: typ, Record: raw}
}

func platformStart(requestID string) telemetryApi.Event {
	return telemetryEvent(telemetryApi.TypePlatformStart, map[string]string{"requestId": requestID, "version": "$LATEST"})
}

func functionLine(line string) telemetryApi.Event {
	return telemetryEvent(telemetryApi.TypeFunction, line)
}

func runtimeDone(requestID, status string) telemetryApi.Event {
	return telemetryEvent(telemetryApi.TypePlatformRuntimeDone, map[string]string{"requestId": requestID, "status": status})
}

func logsDropped(records int) telemetryApi.Event {
	return telemetryEvent(telemetryApi.TypePlatformLogsDropped, map[string]any{"droppedRecords": records, "droppedBytes": records * 100, "reason": "buffer full"})
}

// invocation returns the telemetry of one invocation that writes lines:
// platform.start, the lines, and a runtimeDone with status unless status is
// "" (a runtimeDone never delivered).
func invocation(requestID, status string, lines ...string) []telemetryApi.Event {
	evs := []telemetryApi.Event{platformStart(requestID)}
	for _, l := range lines {
		evs = append(evs, functionLine(l))
	}
	if status != "" {
		evs = append(evs, runtimeDone(requestID, status))
	}
	return evs
}

// Extensions API events (docs/lambda-runtime-contract.md#next-and-its-events).

// invokeEvent is an INVOKE whose deadline is in from now; zero sends no
// deadlineMs, as some emulators do.
func invokeEvent(requestID string, in time.Duration) extensionApi.Event {
	ev := extensionApi.Event{EventType: extensionApi.Invoke, RequestID: requestID, InvokedFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:fn"}
	if in != 0 {
		ev.DeadlineMs = time.Now().Add(in).UnixMilli()
	}
	return ev
}

func shutdownEvent(reason string, in time.Duration) extensionApi.Event {
	return extensionApi.Event{EventType: extensionApi.Shutdown, ShutdownReason: reason, DeadlineMs: time.Now().Add(in).UnixMilli()}
}

// missing returns the wanted lines that are not in got.
func missing(got, want []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			out = append(out, w)
		}
	}
	return out
}

// foreground reports whether a push was a window's or the drain's, as
// opposed to the background's: the drain's context has a deadline, and a
// window's request (which is not cut when its window ends) may retry only
// for a moment, where a background push may for its whole budget
// (testConfig's FlushTimeout, 400 ms) and an outage's attempt not at all.
func foreground(c lokitest.Push) bool {
	retries := c.Until.Sub(c.Began)
	return c.Bounded || retries > 0 && retries < 200*time.Millisecond
}
