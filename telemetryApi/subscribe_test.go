package telemetryApi

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSubscribe(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		wantErr    bool
		notSupp    bool
		wantErrTyp string
	}{
		{"subscribed (docs/lambda-runtime-contract.md#subscribe)", 200, `"OK"`, false, false, ""},
		{"local emulator stub answers 202", 202, `{"errorMessage":"Telemetry API is not supported","errorType":"Telemetry.NotSupported"}`, true, true, ""},
		{"validation error", 400, `{"errorType":"ValidationError","errorMessage":"URI port is not provided"}`, true, false, "ValidationError"},
		{"subscription closed after init", 403, `{"errorType":"Telemetry.SubscriptionClosed","errorMessage":"Telemetry API subscription is closed"}`, true, false, "Telemetry.SubscriptionClosed"},
		{"server error without a body", 500, ``, true, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Subscription
			var gotID string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPut || r.URL.Path != "/2022-07-01/telemetry" {
					w.WriteHeader(404)
					return
				}
				gotID = r.Header.Get("Lambda-Extension-Identifier")
				_ = json.NewDecoder(r.Body).Decode(&got)
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			sub := Subscription{SchemaVersion: SchemaVersion, Types: []string{"platform", "function"},
				Buffering:   Buffering{MaxItems: 1000, MaxBytes: 262144, TimeoutMs: 25},
				Destination: Destination{Protocol: "HTTP", URI: "http://sandbox.localdomain:4323/"}}
			err := Subscribe(t.Context(), strings.TrimPrefix(srv.URL, "http://"), "ext-id", sub)
			if (err != nil) != tt.wantErr || errors.Is(err, ErrNotSupported) != tt.notSupp {
				t.Fatalf("err %v", err)
			}
			var subErr *SubscribeError
			if tt.wantErrTyp != "" && (!errors.As(err, &subErr) || subErr.ErrorType != tt.wantErrTyp || subErr.StatusCode != tt.status) {
				t.Fatalf("want %s, got %v", tt.wantErrTyp, err)
			}
			if gotID != "ext-id" || got.SchemaVersion != SchemaVersion || got.Buffering.TimeoutMs != 25 || got.Destination.URI != sub.Destination.URI {
				t.Fatalf("sent id %q body %+v", gotID, got)
			}
		})
	}
}
