package extensionApi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeAPI answers like RAPID (docs/lambda-runtime-contract.md#extensions-api):
// register returns an identifier, every later call must carry it, errors are 403
// {"errorMessage","errorType"}.
type fakeAPI struct {
	t        *testing.T
	next     []string // bodies /next answers with, in order
	gotName  string
	gotBody  string
	errType  string
	errBody  string
	failWith int
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if f.failWith != 0 {
		w.WriteHeader(f.failWith)
		_, _ = w.Write([]byte(`{"errorMessage":"State transition from Ready to Registered failed","errorType":"Extension.InvalidExtensionState"}`))
		return
	}
	if r.URL.Path != "/2020-01-01/extension/register" && r.Header.Get("Lambda-Extension-Identifier") != "id-1" {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"errorMessage":"Missing Lambda-Extension-Identifier header","errorType":"Extension.MissingExtensionIdentifier"}`))
		return
	}
	switch r.URL.Path {
	case "/2020-01-01/extension/register":
		f.gotName, f.gotBody = r.Header.Get("Lambda-Extension-Name"), string(body)
		w.Header().Set("Lambda-Extension-Identifier", "id-1")
		_, _ = w.Write([]byte(`{"functionName":"fn","functionVersion":"$LATEST","handler":"index.handler"}`))
	case "/2020-01-01/extension/event/next":
		if len(f.next) == 0 {
			f.t.Error("unexpected /next")
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		// RIE answers SHUTDOWN with text/plain
		// (docs/lambda-runtime-contract.md#next-and-its-events).
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(f.next[0]))
		f.next = f.next[1:]
	case "/2020-01-01/extension/init/error", "/2020-01-01/extension/exit/error":
		f.errType, f.errBody = r.Header.Get("Lambda-Extension-Function-Error-Type"), string(body)
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"status":"OK"}`))
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func start(t *testing.T, f *fakeAPI) *Client {
	t.Helper()
	f.t = t
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return NewClient(strings.TrimPrefix(srv.URL, "http://"))
}

func TestRegisterSendsNameAndEventsAndKeepsIdentifier(t *testing.T) {
	f := &fakeAPI{}
	c := start(t, f)
	resp, err := c.Register(t.Context(), "grafana-loki-extension", []EventType{Invoke, Shutdown})
	if err != nil {
		t.Fatal(err)
	}
	if f.gotName != "grafana-loki-extension" || f.gotBody != `{"events":["INVOKE","SHUTDOWN"]}` {
		t.Errorf("register sent name %q body %s", f.gotName, f.gotBody)
	}
	if resp.FunctionName != "fn" || c.ExtensionID() != "id-1" {
		t.Errorf("got %+v, id %q", resp, c.ExtensionID())
	}
}

func TestNextDecodesEvents(t *testing.T) {
	tests := []struct {
		name              string
		body              string
		invoke, shutdown  bool
		reason, requestID string
		deadline          time.Time
	}{
		{"invoke", `{"eventType":"INVOKE","deadlineMs":676051,"requestId":"3da1","invokedFunctionArn":"arn:x","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1"}}`,
			true, false, "", "3da1", time.UnixMilli(676051)},
		{"shutdown, lower-case reason as sent", `{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":1654469121614}`,
			false, true, "spindown", "", time.UnixMilli(1654469121614)},
		{"shutdown, upper-case reason as documented", `{"eventType":"SHUTDOWN","shutdownReason":"TIMEOUT","deadlineMs":5}`,
			false, true, "timeout", "", time.UnixMilli(5)},
		{"unknown event type tolerated", `{"eventType":"RESTORE","deadlineMs":7}`, false, false, "", "", time.UnixMilli(7)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := start(t, &fakeAPI{next: []string{tt.body}})
			if _, err := c.Register(t.Context(), "x", nil); err != nil {
				t.Fatal(err)
			}
			ev, err := c.Next(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if ev.IsInvoke() != tt.invoke || ev.IsShutdown() != tt.shutdown || ev.Reason() != tt.reason || ev.RequestID != tt.requestID || !ev.Deadline().Equal(tt.deadline) {
				t.Errorf("decoded %+v", ev)
			}
		})
	}
}

func TestErrorsCarryLambdaErrorTypeAndMessage(t *testing.T) {
	c := start(t, &fakeAPI{failWith: http.StatusForbidden})
	_, err := c.Register(t.Context(), "x", nil)
	var apiErr *Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("want *Error, got %v", err)
	}
	if apiErr.StatusCode != 403 || apiErr.ErrorType != "Extension.InvalidExtensionState" || !strings.Contains(err.Error(), "State transition") {
		t.Errorf("got %+v", apiErr)
	}
}

func TestNextWithoutIdentifierIsForbidden(t *testing.T) {
	c := start(t, &fakeAPI{next: []string{"{}"}})
	_, err := c.Next(t.Context())
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.ErrorType != "Extension.MissingExtensionIdentifier" {
		t.Fatalf("want MissingExtensionIdentifier, got %v", err)
	}
}

func TestInitAndExitErrorReportTypeAndMessage(t *testing.T) {
	for _, op := range []string{"init", "exit"} {
		t.Run(op, func(t *testing.T) {
			f := &fakeAPI{}
			c := start(t, f)
			if _, err := c.Register(t.Context(), "x", nil); err != nil {
				t.Fatal(err)
			}
			report := c.InitError
			if op == "exit" {
				report = c.ExitError
			}
			if err := report(t.Context(), "Extension.ConfigInvalid", errors.New("LOKI_URL: not set")); err != nil {
				t.Fatal(err)
			}
			var body struct{ ErrorMessage, ErrorType string }
			if err := json.Unmarshal([]byte(f.errBody), &body); err != nil {
				t.Fatal(err)
			}
			if f.errType != "Extension.ConfigInvalid" || body.ErrorType != "Extension.ConfigInvalid" || body.ErrorMessage != "LOKI_URL: not set" {
				t.Errorf("header %q body %s", f.errType, f.errBody)
			}
		})
	}
}

func TestNextHonoursContext(t *testing.T) {
	blocked := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/2020-01-01/extension/register" {
			w.Header().Set("Lambda-Extension-Identifier", "id-1")
			_, _ = w.Write([]byte(`{}`))
			return
		}
		<-blocked
	}))
	t.Cleanup(func() { close(blocked); srv.Close() })
	c := NewClient(strings.TrimPrefix(srv.URL, "http://"))
	if _, err := c.Register(t.Context(), "x", nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline exceeded, got %v", err)
	}
}

// The Runtime API is never reached through HTTPS_PROXY or HTTP_PROXY, which
// a function behind a proxy sets for Loki: Go's default transport would send
// a non-loopback Runtime API address (an emulator's) to the proxy.
func TestRuntimeAPIIsNeverProxied(t *testing.T) {
	c := NewClient("sandbox.localdomain:9001")
	tr, ok := c.http.Transport.(*http.Transport)
	if !ok || tr.Proxy != nil {
		t.Fatalf("the Extensions API client's transport %T uses a proxy function", c.http.Transport)
	}
	if DirectTransport().Proxy != nil {
		t.Fatal("DirectTransport has a proxy function")
	}
}
