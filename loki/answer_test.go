package loki

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
)

// classify is the one place that decides what an answer means: each row is
// an answer Loki (or the network) gives, and what the client does with it.
func TestClassify(t *testing.T) {
	refused := fmt.Errorf("pushing to x: %w", syscall.ECONNREFUSED)
	tests := []struct {
		name   string
		a      answer
		ctxErr error
		want   verdict
	}{
		{"204 stored", answer{status: 204}, nil, answerStored},
		{"200 stored", answer{status: 200}, nil, answerStored},
		{"redirect: a wrong push URL", answer{status: 302}, nil, answerRejected},
		{"400: some entries refused", answer{status: 400, msg: "max entry size"}, nil, answerInvalid},
		{"401: credentials", answer{status: 401}, nil, answerUnauthorized},
		{"403: credentials", answer{status: 403}, nil, answerUnauthorized},
		{"404: wrong path, for good", answer{status: 404}, nil, answerRejected},
		{"413: too large, for good", answer{status: 413}, nil, answerRejected},
		{"422: empty push, for good", answer{status: 422}, nil, answerRejected},
		{"408: may pass", answer{status: 408}, nil, answerTransient},
		{"429: rate limited, may pass", answer{status: 429}, nil, answerTransient},
		{"407: the proxy refuses, an outage on the way", answer{status: 407}, nil, answerTransient},
		{"500: may pass", answer{status: 500}, nil, answerTransient},
		{"502: may pass", answer{status: 502}, nil, answerTransient},
		{"503: may pass", answer{status: 503}, nil, answerTransient},
		{"connection refused: may pass", answer{err: refused}, nil, answerTransient},
		{"the request's own timeout: Loki hangs", answer{err: fmt.Errorf("x: %w", context.DeadlineExceeded)}, nil, answerHung},
		{"the caller's budget ended", answer{err: fmt.Errorf("x: %w", context.DeadlineExceeded)}, context.DeadlineExceeded, answerCalledOff},
		{"the caller called it off", answer{err: fmt.Errorf("x: %w", context.Canceled)}, context.Canceled, answerCalledOff},
		{"a refusal as the budget ends", answer{err: refused}, context.DeadlineExceeded, answerCalledOff},
		{"a request that cannot be built", answer{err: fmt.Errorf("x: %w", errBuildRequest)}, nil, answerRejected},
		{"an unknown error: may pass", answer{err: errors.New("EOF")}, nil, answerTransient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.a, tt.ctxErr); got != tt.want {
				t.Fatalf("classify = %d, want %d", got, tt.want)
			}
		})
	}
}
