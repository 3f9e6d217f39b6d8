package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/fakeloki"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// FLUSH_STRATEGY=adaptive (README.md, "How it works"): once
// invocations come faster than the threshold (1 s), the extension calls
// /next at once and pushes in the background during the next invocation;
// it falls back to pushing before /next when traffic slows; SHUTDOWN drains
// everything; a push cut by a freeze is sent again after the thaw.

// medianDuration returns the middle of ds (the upper middle for an even
// count); zero for none.
func medianDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// 50 invocations 10 ms apart: every line is in Loki by the end of SHUTDOWN,
// once each, and the post-runtime overhead (billed time after the runtime
// finished) is below the subscription's 25 ms buffering timeout, which the
// end mode cannot beat: it waits for platform.runtimeDone, which Lambda
// sends up to that timeout after the runtime finished.
func TestAdaptiveBusyFunctionAddsNoBilledTime(t *testing.T) {
	srv := e2etest.Loki(t)
	o := run(t, script{
		env:     []string{"FLUSH_STRATEGY=adaptive"},
		invokes: 50, gap: 10 * time.Millisecond,
		fn: sandbox.Function{Lines: 20, LineBytes: 100, Duration: 5 * time.Millisecond},
	})
	if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() || d.Written != 1000 {
		t.Fatalf("delivery: %s", d)
	}
	// The first invocation has nothing before it to call traffic busy: it
	// pushes before /next, as the end mode does.
	var busy []time.Duration
	for _, inv := range o.invokes[1:] {
		busy = append(busy, inv.PostRuntime)
	}
	m := medianDuration(busy)
	t.Logf("adaptive, 49 busy invocations: post-runtime overhead median %s, max %s (first invocation, end mode: %s)",
		m, slices.Max(busy), o.invokes[0].PostRuntime)
	if m >= 25*time.Millisecond {
		t.Fatalf("median post-runtime overhead %s: the busy invocations did not call /next before pushing", m)
	}
}

// When traffic slows (an invocation more than 1 s after the previous one)
// the extension pushes before /next again: at that invocation's freeze,
// Loki holds its lines and all the earlier ones, including those of the
// busy invocations whose push was left for the background.
func TestAdaptiveFallsBackToEndWhenTrafficSlows(t *testing.T) {
	srv := e2etest.Loki(t)
	function := e2etest.FunctionName(t)
	const lines = 10
	var atFreeze []int
	o := run(t, script{
		function: function,
		env:      []string{"FLUSH_STRATEGY=adaptive"},
		invokes:  5, gap: 10 * time.Millisecond,
		fn: sandbox.Function{Lines: lines, Duration: 5 * time.Millisecond},
		beforeInvoke: func(i int) {
			if i == 3 {
				time.Sleep(1200 * time.Millisecond) // frozen, longer than the threshold
			}
		},
		atFreeze: func(t *testing.T, _ int, _ string) {
			atFreeze = append(atFreeze, e2etest.Count(t, srv, fmt.Sprintf(`{function=%q, type=""}`, function), time.Now().Add(-time.Hour)))
		},
	})
	t.Logf("lines in Loki at each freeze: %v; post-runtime overheads: %s", atFreeze, overheads(o.invokes))
	if atFreeze[0] != lines {
		t.Errorf("first invocation: %d of %d lines in Loki at its freeze; with nothing before it, it pushes before /next", atFreeze[0], lines)
	}
	if atFreeze[3] != 4*lines {
		t.Errorf("invocation after the slow gap: %d of %d lines in Loki at its freeze; it should push everything before /next", atFreeze[3], 4*lines)
	}
	if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() {
		t.Fatalf("delivery: %s", d)
	}
}

func overheads(invokes []sandbox.InvokeResult) string {
	var s []string
	for _, inv := range invokes {
		s = append(s, inv.PostRuntime.Round(100*time.Microsecond).String())
	}
	return fmt.Sprint(s)
}

// A background push that Loki stored but whose answer the freeze cut off:
// the request times out after the thaw, its lines are sent again, and Loki
// keeps one copy of each. A proxy forwards the push to Loki and withholds
// the answer until the extension gives up, which a frozen extension can
// only do after the thaw.
func TestAdaptivePushCutByAFreezeIsRetriedAfterTheThaw(t *testing.T) {
	srv := e2etest.Loki(t)
	wp := startWithholdingProxy(t, srv.URL())
	function := e2etest.FunctionName(t)
	const (
		requestTimeout = 200 * time.Millisecond
		frozenFor      = 600 * time.Millisecond // more than the budgets, less than the 1 s threshold
	)
	var lastFreeze time.Time
	o := run(t, script{
		function: function,
		pushURL:  wp.srv.URL + "/api/prom/push",
		env:      []string{"FLUSH_STRATEGY=adaptive", "LOKI_TIMEOUT_MS=200", "FLUSH_TIMEOUT_MS=300"},
		invokes:  6, gap: 10 * time.Millisecond,
		// 50 ms of function time: the background push of the previous
		// invocation's lines starts within it and is still waiting for its
		// answer when the sandbox freezes.
		fn: sandbox.Function{Lines: 10, Duration: 50 * time.Millisecond},
		beforeInvoke: func(i int) {
			switch i {
			case 2:
				// Invocation 2 pushes invocation 1's lines in the background.
				wp.withholdNext()
			case 3:
				time.Sleep(frozenFor)
			}
		},
		atFreeze: func(t *testing.T, i int, _ string) {
			if i == 5 {
				lastFreeze = time.Now()
			}
		},
	})
	pushes := wp.log()
	held := slices.IndexFunc(pushes, func(p proxiedPush) bool { return p.withheld })
	if held < 0 {
		t.Fatalf("no push was withheld: %d pushes", len(pushes))
	}
	cut := pushes[held]
	t.Logf("withheld push of %d lines held for %s (request timeout %s); %d pushes in all", len(cut.lines), cut.held, requestTimeout, len(pushes))
	// Awake, the extension gives up after its request timeout; only a
	// frozen one holds on for as long as the freeze.
	if cut.held < requestTimeout+frozenFor/2 {
		t.Fatalf("the withheld push ended after %s: it was not cut by the freeze", cut.held)
	}
	resent := map[string]time.Time{}
	for _, p := range pushes[held+1:] {
		for _, l := range p.lines {
			if _, ok := resent[l]; !ok && p.status == http.StatusNoContent {
				resent[l] = p.at
			}
		}
	}
	for _, l := range cut.lines {
		at, ok := resent[l]
		switch {
		case !ok:
			t.Fatalf("line %q of the cut push was never sent again", l)
		case !at.Before(lastFreeze):
			t.Fatalf("line %q of the cut push was sent again only at SHUTDOWN, not after the thaw", l)
		}
	}
	// Loki stored the withheld push and its retry: exact duplicates, kept once.
	if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() {
		t.Fatalf("delivery: %s", d)
	}
}

// proxiedPush is one push the withholding proxy saw.
type proxiedPush struct {
	at       time.Time
	lines    []string
	status   int
	withheld bool
	held     time.Duration // how long the answer was withheld
}

// withholdingProxy forwards pushes to Loki and answers with Loki's status,
// except for the one push after withholdNext: Loki stores it, but its answer
// never comes; the request ends only when the client gives up.
type withholdingProxy struct {
	srv      *httptest.Server
	upstream string
	release  chan struct{} // closed when the test ends

	mu       sync.Mutex
	withhold bool
	pushes   []proxiedPush
}

func startWithholdingProxy(t *testing.T, upstream string) *withholdingProxy {
	wp := &withholdingProxy{upstream: upstream, release: make(chan struct{})}
	wp.srv = httptest.NewServer(http.HandlerFunc(wp.serve))
	t.Cleanup(func() {
		close(wp.release)
		wp.srv.CloseClientConnections()
		wp.srv.Close()
	})
	return wp
}

func (wp *withholdingProxy) withholdNext() {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	wp.withhold = true
}

// log returns the pushes in the order they arrived.
func (wp *withholdingProxy) log() []proxiedPush {
	wp.mu.Lock()
	defer wp.mu.Unlock()
	pushes := slices.Clone(wp.pushes)
	slices.SortFunc(pushes, func(a, b proxiedPush) int { return a.at.Compare(b.at) })
	return pushes
}

func (wp *withholdingProxy) serve(w http.ResponseWriter, r *http.Request) {
	push := proxiedPush{at: time.Now()}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	push.lines = pushedLines(body)
	resp, err := http.Post(wp.upstream+r.URL.Path, r.Header.Get("Content-Type"), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	push.status = resp.StatusCode

	wp.mu.Lock()
	push.withheld, wp.withhold = wp.withhold, false
	wp.mu.Unlock()
	if push.withheld {
		select {
		case <-r.Context().Done(): // the client gave up
		case <-wp.release:
		}
		push.held = time.Since(push.at)
		// Never answer: drop the connection, so the push cannot count as done.
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
	} else {
		w.WriteHeader(resp.StatusCode)
	}
	wp.mu.Lock()
	wp.pushes = append(wp.pushes, push)
	wp.mu.Unlock()
}

// pushedLines decodes a snappy + protobuf push body into its lines.
func pushedLines(body []byte) []string {
	req, _, err := fakeloki.Decode(body)
	if err != nil {
		return nil
	}
	var lines []string
	for _, s := range req.Streams {
		for _, e := range s.Entries {
			lines = append(lines, e.Line)
		}
	}
	return lines
}
