package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/faultproxy"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// A logging outage must not become the function's outage: once a window
// fails because Loki is away (refusing, hanging, or rate limiting with
// Retry-After), later invocations call /next right after their runtimeDone
// and delivery waits in the background; every line is in Loki by the end of
// SHUTDOWN, none twice. Times are loose bounds that tell "no push before
// /next" (tens of ms) from "a push per invocation" (the flush budget, 2 s
// here); the figures themselves are in the benchmark's outage row.
func TestOutageCostsTheFunctionNothing(t *testing.T) {
	const (
		invokes     = 30
		firstFailed = 2 // invocations 3 to 22, counting from 1
		lastFailed  = 21
		lokiTimeout = 600 * time.Millisecond
	)
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
			p := proxy(t, faultproxy.Config{Upstream: srv.URL()})
			o := run(t, scenario{
				pushURL: p.URL() + "/api/prom/push",
				env:     []string{"FLUSH_TIMEOUT_MS=2000", fmt.Sprintf("LOKI_TIMEOUT_MS=%d", lokiTimeout.Milliseconds())},
				invokes: invokes, gap: 200 * time.Millisecond, fn: sandbox.Function{Lines: 20},
				beforeInvoke: func(i int) {
					if i >= firstFailed && i <= lastFailed {
						p.SetFault(tt.fault)
					} else {
						p.SetFault(faultproxy.Fault{Kind: faultproxy.Pass})
					}
				},
			})
			if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() {
				t.Fatalf("delivery: %s", d)
			}
			var during []time.Duration
			for i := firstFailed + 1; i <= lastFailed; i++ {
				during = append(during, o.invokes[i].PostRuntime)
			}
			slices.Sort(during)
			t.Logf("first failing window %s; after it, during the outage: median %s, max %s",
				o.invokes[firstFailed].PostRuntime, during[len(during)/2], during[len(during)-1])
			if first := o.invokes[firstFailed].PostRuntime; first > tt.firstWindow {
				t.Errorf("the first failing invocation spent %s after its runtime, beyond %s", first, tt.firstWindow)
			}
			if worst := during[len(during)-1]; worst > 300*time.Millisecond {
				t.Errorf("an invocation during the outage spent %s after its runtime: it pushed before /next", worst)
			}
			out := o.sb.ExtensionOutput()
			if n := strings.Count(out, "Loki is unavailable"); n != 1 {
				t.Errorf("the outage was logged %d times, want once:\n%s", n, out)
			}
			if n := strings.Count(out, "Loki is back"); n != 1 {
				t.Errorf("the recovery was logged %d times, want once:\n%s", n, out)
			}
			if tt.fault.RetryAfter != "" {
				checkRetryAfter(t, p.Requests(), 2*time.Second)
			}
		})
	}
}

// checkRetryAfter checks that no request followed a refused one sooner than
// Loki asked.
func checkRetryAfter(t *testing.T, requests []faultproxy.Request, pause time.Duration) {
	t.Helper()
	failed := 0
	for i, r := range requests {
		if r.Outcome != "failed" {
			continue
		}
		failed++
		if i+1 < len(requests) {
			// Jitter aside, the pause may come out a few ms short of the
			// header's whole seconds when the client rounds nothing.
			if gap := requests[i+1].At.Sub(r.At); gap < pause-50*time.Millisecond {
				t.Errorf("a request %s after a 429 asking for %s (request %d of %d: %+v)", gap, pause, i+1, len(requests), requests)
			}
		}
	}
	if failed == 0 {
		t.Fatal("no request was refused: the fault was not exercised")
	}
}
