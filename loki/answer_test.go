package loki

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// classify is the one place that decides what an answer means: each row is
// an answer Loki (or the network) gives, the push it came to, and what the
// client does with it. A window or a background push (window) has its own
// schedule of attempts; the SHUTDOWN drain (drain) retries at its own pace.
func TestClassify(t *testing.T) {
	refused := fmt.Errorf("pushing to x: %w", syscall.ECONNREFUSED)
	reset := fmt.Errorf("pushing to x: %w", syscall.ECONNRESET)
	dns := fmt.Errorf("pushing to x: %w", &net.DNSError{Err: "no such host", Name: "loki.example", IsNotFound: true})
	window, drain := try{}, try{ownPace: true}
	paused := func(t try) try { t.retryAfter = 2 * time.Second; return t }
	called := func(t try, err error) try { t.ctxErr = err; return t }
	tests := []struct {
		name string
		a    answer
		t    try
		want verdict
	}{
		{"204 stored", answer{status: 204}, window, answerStored},
		{"200 stored", answer{status: 200}, drain, answerStored},
		{"redirect: a wrong push URL", answer{status: 302}, window, answerRejected},
		{"400: some entries refused", answer{status: 400, msg: "max entry size"}, window, answerInvalid},
		{"401: credentials", answer{status: 401}, window, answerUnauthorized},
		{"403: credentials", answer{status: 403}, drain, answerUnauthorized},
		{"404: wrong path, for good", answer{status: 404}, window, answerRejected},
		{"413: too large, for good", answer{status: 413}, drain, answerRejected},
		{"422: empty push, for good", answer{status: 422}, window, answerRejected},

		{"window, 500: one quick retry may pass", answer{status: 500}, window, answerRetry},
		{"window, 502", answer{status: 502}, window, answerRetry},
		{"window, 503 with Retry-After: Loki asked for a pause", answer{status: 503}, paused(window), answerAway},
		{"window, 429: the rate limit, away for now", answer{status: 429}, window, answerAway},
		{"window, 429 with Retry-After", answer{status: 429}, paused(window), answerAway},
		{"window, 408: away for now", answer{status: 408}, window, answerAway},
		{"window, 407: the proxy refuses, an outage on the way", answer{status: 407}, window, answerAway},
		{"window, connection refused: away", answer{err: refused}, window, answerAway},
		{"window, name not resolved: away", answer{err: dns}, window, answerAway},
		{"window, connection reset: a quick retry may pass", answer{err: reset}, window, answerRetry},
		{"window, answer cut short (EOF)", answer{err: fmt.Errorf("x: %w", io.EOF)}, window, answerRetry},
		{"window, unknown error: away", answer{err: errors.New("tls: bad certificate")}, window, answerAway},

		{"drain, 500: retried", answer{status: 500}, drain, answerRetry},
		{"drain, 429 without Retry-After: retried with backoff", answer{status: 429}, drain, answerRetry},
		{"drain, 429 with Retry-After: the drain waits it out", answer{status: 429}, paused(drain), answerAway},
		{"drain, connection refused: retried while the budget lasts", answer{err: refused}, drain, answerRetry},
		{"drain, name not resolved: retried", answer{err: dns}, drain, answerRetry},

		{"the request's own timeout: Loki hangs", answer{err: fmt.Errorf("x: %w", context.DeadlineExceeded)}, window, answerHung},
		{"the caller's budget ended", answer{err: fmt.Errorf("x: %w", context.DeadlineExceeded)}, called(window, context.DeadlineExceeded), answerCalledOff},
		{"the caller called it off", answer{err: fmt.Errorf("x: %w", context.Canceled)}, called(drain, context.Canceled), answerCalledOff},
		{"a refusal as the budget ends", answer{err: refused}, called(drain, context.DeadlineExceeded), answerCalledOff},
		{"a request that cannot be built", answer{err: fmt.Errorf("x: %w", errBuildRequest)}, window, answerRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.a, tt.t); got != tt.want {
				t.Fatalf("classify = %d, want %d", got, tt.want)
			}
		})
	}
}
