// Package extensionApi is a client for the Lambda Extensions API (version
// 2020-01-01): register, next, init/error and exit/error.
package extensionApi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Header names of the Extensions API.
const (
	headerName       = "Lambda-Extension-Name"
	headerIdentifier = "Lambda-Extension-Identifier"
	headerErrorType  = "Lambda-Extension-Function-Error-Type"
)

// EventType is an event an extension can register for.
type EventType string

const (
	// Invoke is sent once per invocation, before the function runs.
	Invoke EventType = "INVOKE"
	// Shutdown is sent once, when the execution environment ends.
	Shutdown EventType = "SHUTDOWN"
)

// Tracing is the X-Ray trace context of an INVOKE.
type Tracing struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Event is what /extension/event/next returns: an INVOKE or a SHUTDOWN.
type Event struct {
	EventType          EventType `json:"eventType"`
	DeadlineMs         int64     `json:"deadlineMs"`
	RequestID          string    `json:"requestId,omitempty"`
	InvokedFunctionArn string    `json:"invokedFunctionArn,omitempty"`
	ShutdownReason     string    `json:"shutdownReason,omitempty"`
	Tracing            *Tracing  `json:"tracing,omitempty"`
}

// Deadline is DeadlineMs as a time: the function timeout for an INVOKE, the
// moment Lambda kills the environment for a SHUTDOWN.
func (e Event) Deadline() time.Time { return time.UnixMilli(e.DeadlineMs) }

// IsShutdown reports whether the event is a SHUTDOWN. Lambda's documents
// spell event types in upper case; compare without case all the same.
func (e Event) IsShutdown() bool { return strings.EqualFold(string(e.EventType), string(Shutdown)) }

// IsInvoke reports whether the event is an INVOKE.
func (e Event) IsInvoke() bool { return strings.EqualFold(string(e.EventType), string(Invoke)) }

// Reason is the shutdown reason in lower case (spindown, timeout, failure).
// The documents spell them in upper case and Lambda sends lower case.
func (e Event) Reason() string { return strings.ToLower(e.ShutdownReason) }

// RegisterResponse is the body of a successful registration.
type RegisterResponse struct {
	FunctionName    string `json:"functionName"`
	FunctionVersion string `json:"functionVersion"`
	Handler         string `json:"handler"`
	AccountID       string `json:"accountId,omitempty"`
}

// Error is an error answer from the Extensions API, with Lambda's errorType
// and errorMessage when the body carries them.
type Error struct {
	Op           string
	StatusCode   int
	ErrorType    string `json:"errorType"`
	ErrorMessage string `json:"errorMessage"`
}

// Error describes the failed call.
func (e *Error) Error() string {
	if e.ErrorType == "" && e.ErrorMessage == "" {
		return fmt.Sprintf("extensions api %s: status %d", e.Op, e.StatusCode)
	}
	return fmt.Sprintf("extensions api %s: status %d: %s: %s", e.Op, e.StatusCode, e.ErrorType, e.ErrorMessage)
}

// Client talks to the Extensions API of one execution environment. Register
// must succeed before the other calls.
type Client struct {
	baseURL     string
	http        *http.Client
	extensionID string
}

// NewClient returns a client for AWS_LAMBDA_RUNTIME_API (host:port).
func NewClient(runtimeAPI string) *Client {
	return &Client{
		baseURL: "http://" + runtimeAPI + "/2020-01-01/extension",
		// No timeout: /next blocks until the next event, which may be hours
		// away. Contexts bound every other call.
		http: &http.Client{Transport: DirectTransport()},
	}
}

// DirectTransport is Go's default transport without a proxy, for the
// Runtime API (Extensions and Telemetry): it is on the sandbox's own
// loopback, never behind HTTPS_PROXY or HTTP_PROXY, also where an emulator
// gives it a name that is not a loopback address.
func DirectTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	return t
}

// ExtensionID is the identifier Lambda gave at registration.
func (c *Client) ExtensionID() string { return c.extensionID }

// Register registers the extension under name, which must be the file name
// of its executable, for the given events.
func (c *Client) Register(ctx context.Context, name string, events []EventType) (RegisterResponse, error) {
	body, err := json.Marshal(struct {
		Events []EventType `json:"events"`
	}{events})
	if err != nil {
		return RegisterResponse{}, fmt.Errorf("extensions api register: %w", err)
	}
	resp, err := c.do(ctx, "register", http.MethodPost, "/register", body, map[string]string{headerName: name})
	if err != nil {
		return RegisterResponse{}, err
	}
	var out RegisterResponse
	if err := json.Unmarshal(resp.body, &out); err != nil {
		return RegisterResponse{}, fmt.Errorf("extensions api register: decoding response: %w", err)
	}
	c.extensionID = resp.header.Get(headerIdentifier)
	if c.extensionID == "" {
		return RegisterResponse{}, fmt.Errorf("extensions api register: response has no %s header", headerIdentifier)
	}
	return out, nil
}

// Next blocks until Lambda sends the next event. Calling it tells Lambda the
// extension is done with the previous one, which lets the environment freeze.
func (c *Client) Next(ctx context.Context) (Event, error) {
	resp, err := c.do(ctx, "next", http.MethodGet, "/event/next", nil, nil)
	if err != nil {
		return Event{}, err
	}
	var ev Event
	// Some emulators answer SHUTDOWN with text/plain; the body is JSON all the same.
	if err := json.Unmarshal(resp.body, &ev); err != nil {
		return Event{}, fmt.Errorf("extensions api next: decoding event: %w", err)
	}
	return ev, nil
}

// InitError reports a failure during init; Lambda then fails the init and the
// extension should exit. errorType is Category.Reason, e.g. Extension.ConfigInvalid.
func (c *Client) InitError(ctx context.Context, errorType string, cause error) error {
	return c.reportError(ctx, "init/error", errorType, cause)
}

// ExitError reports a failure that makes the extension exit.
func (c *Client) ExitError(ctx context.Context, errorType string, cause error) error {
	return c.reportError(ctx, "exit/error", errorType, cause)
}

func (c *Client) reportError(ctx context.Context, op, errorType string, cause error) error {
	msg := ""
	if cause != nil {
		msg = cause.Error()
	}
	body, err := json.Marshal(struct {
		ErrorMessage string   `json:"errorMessage"`
		ErrorType    string   `json:"errorType"`
		StackTrace   []string `json:"stackTrace"`
	}{msg, errorType, []string{}})
	if err != nil {
		return fmt.Errorf("extensions api %s: %w", op, err)
	}
	_, err = c.do(ctx, op, http.MethodPost, "/"+op, body, map[string]string{headerErrorType: errorType})
	return err
}

type response struct {
	header http.Header
	body   []byte
}

// maxResponseBytes bounds what is read from the API; events are small.
const maxResponseBytes = 1 << 20

func (c *Client) do(ctx context.Context, op, method, path string, body []byte, headers map[string]string) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, rd)
	if err != nil {
		return response{}, fmt.Errorf("extensions api %s: %w", op, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.extensionID != "" {
		req.Header.Set(headerIdentifier, c.extensionID)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("extensions api %s: %w", op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return response{}, fmt.Errorf("extensions api %s: reading response: %w", op, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		apiErr := &Error{Op: op, StatusCode: resp.StatusCode}
		// The body is Lambda's {"errorType","errorMessage"} when it can be read.
		_ = json.Unmarshal(data, apiErr)
		return response{}, apiErr
	}
	return response{header: resp.Header, body: data}, nil
}
