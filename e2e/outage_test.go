package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/faultproxy"
	"github.com/lambda-loki/grafana-loki-extension/internal/scenario"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// A logging outage must not become the function's outage: once a window
// fails because Loki is away (refusing, hanging, or rate limiting with
// Retry-After), later invocations call /next right after their runtimeDone
// and delivery waits in the background; every line is in Loki by the end of
// SHUTDOWN, none twice. Times are loose bounds that tell "no push before
// /next" (tens of ms) from "a push per invocation" (the flush budget, 2 s
// here); the figures themselves are in the benchmark's outage rows, which
// run the same scenario (package scenario).
func TestOutageCostsTheFunctionNothing(t *testing.T) {
	const lokiTimeout = 600 * time.Millisecond
	tests := []struct {
		name  string
		fault faultproxy.Fault
		// firstWindow bounds the post-runtime time of the first failing
		// invocation, which may spend one window on Loki.
		firstWindow time.Duration
	}{
		{"Loki refusing", faultproxy.Fault{Kind: faultproxy.Down}, 2*time.Second + 300*time.Millisecond},
		{"Loki hanging", faultproxy.Fault{Kind: faultproxy.Hang}, lokiTimeout + 300*time.Millisecond},
		{"Loki answering 429 with Retry-After: 2", faultproxy.Fault{Kind: faultproxy.Status, Code: 429, RetryAfter: "2"}, 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := e2etest.Loki(t)
			o, err := scenario.Run(t.Context(), scenario.NewPlan(srv, sandbox.Config{
				ExtensionsDir: e2etest.ExtensionDir(t), FunctionName: e2etest.FunctionName(t),
				Env: []string{"FLUSH_TIMEOUT_MS=2000", "LOKI_TIMEOUT_MS=600"},
			}, tt.fault))
			logOutputOnFailure(t, o.Output)
			if err != nil {
				t.Fatal(err)
			}
			if !o.Delivery.Complete() {
				t.Fatalf("delivery: %s", o.Delivery)
			}
			if err := o.CheckSummary(); err != nil {
				t.Errorf("the shutdown summary does not account for every line: %v", err)
			}
			during := slices.Sorted(slices.Values(o.During()))
			t.Logf("first failing window %s; after it, during the outage: median %s, max %s; %d attempts in the background",
				o.FirstWindow(), during[len(during)/2], during[len(during)-1], o.Attempts())
			if first := o.FirstWindow(); first > tt.firstWindow {
				t.Errorf("the first failing invocation spent %s after its runtime, beyond %s", first, tt.firstWindow)
			}
			if worst := during[len(during)-1]; worst > 300*time.Millisecond {
				t.Errorf("an invocation during the outage spent %s after its runtime: it pushed before /next", worst)
			}
			// 1 s, then about 2 and 4 more: the outage lasts about 5 s here.
			if n := o.Attempts(); n > 5 {
				t.Errorf("%d requests in the background during the outage: attempts do not follow the backoff", n)
			}
			if began, ended := o.Logged(); began != 1 || ended != 1 {
				t.Errorf("the outage was logged %d times and the recovery %d times, want once each", began, ended)
			}
			if tt.fault.RetryAfter != "" {
				checkRetryAfter(t, o.Requests, 2*time.Second)
			}
		})
	}
}

// checkRetryAfter checks that no request followed a refused one sooner than
// Loki asked.
func checkRetryAfter(t *testing.T, requests []faultproxy.Request, pause time.Duration) {
	t.Helper()
	if scenario.Refused(requests) == 0 {
		t.Fatal("no request was refused: the fault was not exercised")
	}
	for _, gap := range scenario.PausesAfterRefusal(requests) {
		// A loose bound, as for the times above: the benchmark reports the
		// shortest pause against the 2 s itself.
		if gap < pause-50*time.Millisecond {
			t.Errorf("a request %s after a 429 asking for %s (%d requests: %+v)", gap, pause, len(requests), requests)
		}
	}
}

// logOutputOnFailure logs the extension's output if the test fails, as
// e2etest.StartSandbox does for the sandboxes it starts.
func logOutputOnFailure(t *testing.T, output string) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("extension output:\n%s", output)
		}
	})
}
