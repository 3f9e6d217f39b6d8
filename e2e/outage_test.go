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

// A logging outage must not become the function's outage: the window that
// finds Loki away (refusing, failing with 500, rate limiting with or
// without Retry-After, hanging) spends about one round trip on it, or the
// window's short wait for a hanging Loki; later invocations call /next
// right after their runtimeDone and delivery waits in the background;
// every line is in Loki by the end of SHUTDOWN, none twice, and a request
// that outlived its window was not cut (no duplicate). Times are loose
// bounds that tell "about a round trip" (tens of ms) from "retrying inside
// the window" (a second or more) and the window's wait (250 ms) from the
// request's timeout (1.5 s); the figures themselves are in the
// benchmark's rows, which run the same scenario (package scenario).
func TestOutageCostsTheFunctionNothing(t *testing.T) {
	tests := []struct {
		name  string
		fault faultproxy.Fault
		// firstWindow bounds the post-runtime time of the first failing
		// invocation, which may spend one window on Loki.
		firstWindow time.Duration
	}{
		{"Loki refusing", faultproxy.Fault{Kind: faultproxy.Down}, 400 * time.Millisecond},
		{"Loki answering 500", faultproxy.Fault{Kind: faultproxy.Status, Code: 500}, 400 * time.Millisecond},
		{"Loki answering 429 without Retry-After", faultproxy.Fault{Kind: faultproxy.Status, Code: 429, NoRetryAfter: true}, 400 * time.Millisecond},
		{"Loki answering 429 with Retry-After: 2", faultproxy.Fault{Kind: faultproxy.Status, Code: 429, RetryAfter: "2"}, 400 * time.Millisecond},
		{"Loki hanging", faultproxy.Fault{Kind: faultproxy.Hang}, 900 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := e2etest.Loki(t)
			o, err := scenario.Run(t.Context(), scenario.NewPlan(srv, sandbox.Config{
				ExtensionsDir: e2etest.ExtensionDir(t), FunctionName: e2etest.FunctionName(t),
				Env: []string{"FLUSH_TIMEOUT_MS=2000", "LOKI_TIMEOUT_MS=1500"},
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
			if tt.fault.RetryAfter == "2" {
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

// A hanging Loki beside a busy function gets the outage's backoff, not a
// request per timeout: invoked every 50 ms, the function calls /next during
// every hung request, which alone says nothing of a freeze (a request
// frozen with its sandbox outlives its own timeout by far; these do not).
// With a 300 ms timeout, taking each hang for a freeze sent 18 requests in
// 6 s, and in periodic mode the outage never began.
func TestHangingLokiBesideABusyFunctionBacksOff(t *testing.T) {
	for _, strategy := range []string{"end", "periodic,100"} {
		t.Run(strategy, func(t *testing.T) {
			srv := e2etest.Loki(t)
			plan := scenario.NewPlan(srv, sandbox.Config{
				ExtensionsDir: e2etest.ExtensionDir(t), FunctionName: e2etest.FunctionName(t),
				Env: []string{"FLUSH_STRATEGY=" + strategy, "LOKI_TIMEOUT_MS=300"},
			}, faultproxy.Fault{Kind: faultproxy.Hang})
			// About 6 s of hanging, then Loki back for the last invocations.
			plan.Invokes, plan.FirstFailed, plan.LastFailed, plan.Gap = 110, 2, 101, 50*time.Millisecond
			plan.Fn = sandbox.Function{Lines: 2}
			o, err := scenario.Run(t.Context(), plan)
			logOutputOnFailure(t, o.Output)
			if err != nil {
				t.Fatal(err)
			}
			if !o.Delivery.Complete() {
				t.Fatalf("delivery: %s", o.Delivery)
			}
			t.Logf("%d requests while Loki hung, %d in all", o.Attempts(), len(o.Requests))
			// 1 s, then about 2 and 4 more: a handful in 6 s; a request per
			// timeout would be about 20.
			if n := o.Attempts(); n > 8 {
				t.Errorf("%d requests while Loki hung: attempts do not back off", n)
			}
			if began, _ := o.Logged(); began != 1 {
				t.Errorf("the outage was logged %d times, want once", began)
			}
		})
	}
}
