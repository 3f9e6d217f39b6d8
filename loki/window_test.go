package loki

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/fakeloki"
)

// A window's push (a retry bound of a few tens of milliseconds) spends
// about one round trip on a failing Loki: a refused connection and a 429
// end it at once, a 5xx gets at most one quick retry; the SHUTDOWN drain
// (no bound) retries them all while its budget lasts.
func TestAWindowsPushCostsAboutOneRoundTrip(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	refusedURL := closed.URL
	closed.Close()
	tests := []struct {
		name        string
		respond     func(int, http.ResponseWriter) bool // nil: connections refused
		maxRequests int
	}{
		{"connection refused", nil, 1},
		{"429 without Retry-After", status(429, "ingestion rate limit exceeded"), 1},
		{"500", status(500, "internal"), 2},
		{"503", status(503, "unavailable"), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				requests func() int
				c        *Client
				err      error
			)
			if tt.respond == nil {
				if c, err = New(Config{URL: refusedURL + "/push"}); err != nil {
					t.Fatal(err)
				}
			} else {
				f := &fakeloki.Loki{Respond: tt.respond}
				c, _ = newClient(t, f, nil)
				requests = f.Requests
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			start := time.Now()
			res := c.PushRetrying(ctx, []Entry{{Time: t0, Line: "a"}}, start.Add(50*time.Millisecond))
			took := time.Since(start)
			if len(res.Undelivered) != 1 || !res.Unavailable || res.Requests > tt.maxRequests || took > 500*time.Millisecond {
				t.Fatalf("%d requests in %s (want at most %d, about a round trip): %+v", res.Requests, took, tt.maxRequests, res)
			}
			if requests != nil && requests() != res.Requests {
				t.Fatalf("Loki saw %d requests, the result says %d", requests(), res.Requests)
			}
			drainCtx, cancelDrain := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancelDrain()
			if drain := c.PushRetrying(drainCtx, []Entry{{Time: t0, Line: "a"}}, time.Time{}); drain.Requests < 2 {
				t.Fatalf("the drain gave up after %d requests with its budget left: %+v", drain.Requests, drain)
			}
		})
	}
}
