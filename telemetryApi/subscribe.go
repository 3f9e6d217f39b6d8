package telemetryApi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/lambda-loki/grafana-loki-extension/extensionApi"
)

// Schema versions of the Telemetry API
// (docs/lambda-runtime-contract.md#subscribe). The path stays
// /2022-07-01/telemetry for all of them.
const (
	SchemaVersion          = "2022-12-13"
	SchemaVersionManagedIn = "2025-01-29"
)

// ErrNotSupported is returned by Subscribe when the Telemetry API answers 202,
// as AWS's runtime interface emulator, SAM and other local emulators do: the
// subscription is accepted and nothing will ever be delivered.
var ErrNotSupported = errors.New("telemetry api is not supported here (local emulator answered 202)")

// Subscription is the body of a Telemetry API subscribe request.
type Subscription struct {
	SchemaVersion string      `json:"schemaVersion"`
	Types         []string    `json:"types"`
	Buffering     Buffering   `json:"buffering"`
	Destination   Destination `json:"destination"`
}

// Buffering says when Lambda cuts a batch: at MaxItems events, MaxBytes
// bytes, or TimeoutMs after its first event.
type Buffering struct {
	MaxItems  int `json:"maxItems"`
	MaxBytes  int `json:"maxBytes"`
	TimeoutMs int `json:"timeoutMs"`
}

// Destination is where Lambda POSTs batches: an HTTP URI inside the sandbox.
type Destination struct {
	Protocol string `json:"protocol"`
	URI      string `json:"URI"`
}

// SubscribeError is an error answer to a subscribe request.
type SubscribeError struct {
	StatusCode   int
	ErrorType    string `json:"errorType"`
	ErrorMessage string `json:"errorMessage"`
}

// Error describes the refusal with Lambda's own words.
func (e *SubscribeError) Error() string {
	return fmt.Sprintf("telemetry api subscribe: status %d: %s: %s", e.StatusCode, e.ErrorType, e.ErrorMessage)
}

// Subscribe subscribes extensionID to the Telemetry API of runtimeAPI
// (host:port). It must be called before the extension's first /next.
func Subscribe(ctx context.Context, runtimeAPI, extensionID string, sub Subscription) error {
	body, err := json.Marshal(sub)
	if err != nil {
		return fmt.Errorf("telemetry api subscribe: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+runtimeAPI+"/2022-07-01/telemetry", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("telemetry api subscribe: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Lambda-Extension-Identifier", extensionID)
	t := extensionApi.DirectTransport()
	defer t.CloseIdleConnections()
	resp, err := (&http.Client{Transport: t}).Do(req)
	if err != nil {
		return fmt.Errorf("telemetry api subscribe: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64*1024))
	switch {
	case resp.StatusCode == http.StatusAccepted:
		return fmt.Errorf("%w: %s", ErrNotSupported, bytes.TrimSpace(data))
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return nil
	}
	subErr := &SubscribeError{StatusCode: resp.StatusCode}
	if json.Unmarshal(data, subErr) != nil || subErr.ErrorType == "" {
		subErr.ErrorMessage = string(bytes.TrimSpace(data))
	}
	return subErr
}
