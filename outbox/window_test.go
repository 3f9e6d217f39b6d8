package outbox

import (
	"sync"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/lokitest"
)

// settledReports collects what DispatcherConfig.Settled is given.
type settledReports struct {
	mu   sync.Mutex
	reps []Report
}

func (s *settledReports) add(rep Report) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reps = append(s.reps, rep)
}

func (s *settledReports) wait(t *testing.T) Report {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		n := len(s.reps)
		s.mu.Unlock()
		if n > 0 {
			return s.reps[0]
		}
	}
	t.Fatal("the request that went on past its window never settled")
	return Report{}
}

// A Loki that accepts a window's request and does not answer holds the
// window only the window's wait: the request goes on, uncut, and its
// answer decides. Delivered late, the lines are not sent again; timed out,
// they go back to the queue and the outage begins. Meanwhile the next
// window does not wait for it.
func TestWindowWaitsAShortBoundThenTheRequestGoesOn(t *testing.T) {
	tests := []struct {
		name   string
		answer lokitest.Answer
	}{
		{"Loki slow, then answering", lokitest.Deliver},
		{"Loki hanging until the request's timeout", lokitest.Hang},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQueue(1000, 1<<20, nil)
			p := &lokitest.Pusher{}
			p.Answer(tt.answer)
			p.Timeout(300*time.Millisecond, false)
			if tt.answer == lokitest.Deliver {
				p.Delay(300 * time.Millisecond)
			}
			var settled settledReports
			d := NewDispatcher(q, p, DispatcherConfig{WindowWait: 50 * time.Millisecond, Settled: settled.add})
			q.Put(lines("a", 5))
			start := time.Now()
			rep := d.Push(t.Context(), BeforeNext)
			if took := time.Since(start); took > 250*time.Millisecond || rep.InFlight != 5 || rep.Requeued != 0 || rep.Delivered != 0 {
				t.Fatalf("the window took %s, want about its 50 ms wait: %+v", took, rep)
			}
			q.Put(lines("b", 1))
			if rep := d.Push(t.Context(), BeforeNext); !rep.Skipped || rep.Requests != 0 {
				t.Fatalf("the next window pushed, or waited, while the request was in flight: %+v", rep)
			}
			late := settled.wait(t)
			pushes := p.Pushes()
			if len(pushes) != 1 {
				t.Fatalf("%d pushes, want the one request", len(pushes))
			}
			if took := pushes[0].At.Sub(pushes[0].Began); took < 250*time.Millisecond {
				t.Fatalf("the request was cut after %s", took)
			}
			switch tt.answer {
			case lokitest.Deliver:
				if late.Delivered != 5 || late.Requeued != 0 || d.Outage() || q.Len() != 1 {
					t.Fatalf("settled: %+v, queue %d", late, q.Len())
				}
			case lokitest.Hang:
				if !late.OutageBegan || late.Requeued != 5 || !d.Outage() || q.Len() != 6 {
					t.Fatalf("settled: %+v, queue %d", late, q.Len())
				}
			}
		})
	}
}

// A request that timed out while the lifecycle called /next is a freeze's
// doing only when it outlived its own timeout by far (Stalled): then the
// next attempt is due at once, no failure counted. A hanging Loki beside a
// busy function crosses a /next during every request, and must still
// count: its outage begins, and attempts back off.
func TestDispatcherTellsAFreezeFromAHang(t *testing.T) {
	tests := []struct {
		name    string
		stalled bool
	}{
		{"a hang across a /next: a failure, backed off", false},
		{"a freeze: the timeout fired far too late, retried at once", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQueue(1000, 1<<20, nil)
			p := &lokitest.Pusher{}
			p.Answer(lokitest.Hang)
			p.Timeout(60*time.Millisecond, tt.stalled)
			d := NewDispatcher(q, p, DispatcherConfig{RetryMin: time.Second})
			q.Put(lines("a", 3))
			time.AfterFunc(20*time.Millisecond, func() { d.NextCalled(); d.NextReturned() })
			rep := d.Push(t.Context(), OnTimer)
			if rep.Requeued != 3 {
				t.Fatalf("%+v", rep)
			}
			next, _ := d.NextAttempt()
			switch {
			case !tt.stalled && (!rep.OutageBegan || time.Until(next) < 400*time.Millisecond):
				t.Fatalf("a hang counted no failure: outage began %v, next attempt in %s", rep.OutageBegan, time.Until(next))
			case tt.stalled && (rep.OutageBegan || time.Until(next) > 0):
				t.Fatalf("a freeze counted as a failure: outage began %v, next attempt in %s", rep.OutageBegan, time.Until(next))
			}
		})
	}
}

// The SHUTDOWN drain keeps several requests in flight once Loki has taken
// the first, takes the oldest entries first, and sends each line once.
func TestDrainKeepsSeveralRequestsInFlight(t *testing.T) {
	q := NewQueue(1_000_000, 1<<30, nil)
	p := &lokitest.Pusher{}
	p.Delay(30 * time.Millisecond)
	d := NewDispatcher(q, p, DispatcherConfig{})
	const n = 8 * takeSize
	q.Put(lines("a", n))
	rep := d.Push(t.Context(), Shutdown)
	if rep.Delivered != n || rep.Remaining != 0 {
		t.Fatalf("%+v", rep)
	}
	pushes := p.Pushes()
	if first, second := pushes[0], pushes[1]; second.Began.Before(first.At) {
		t.Fatal("the second request went before Loki had answered the first")
	}
	most := 0
	for _, a := range pushes {
		inFlight := 0 // when a began
		for _, b := range pushes {
			if !a.Began.Before(b.Began) && a.Began.Before(b.At) {
				inFlight++
			}
		}
		most = max(most, inFlight)
	}
	if most < 2 || most > drainInFlight {
		t.Fatalf("at most %d requests in flight at once, want 2 to %d", most, drainInFlight)
	}
	seen := map[string]bool{}
	for _, l := range p.Delivered() {
		if seen[l] {
			t.Fatalf("%s delivered twice", l)
		}
		seen[l] = true
	}
}

// A 429 halves the rate of a sandbox's window requests, and each request
// Loki takes grows it back by a step: windows that come too soon are
// skipped, their lines going with the next request, until windows push
// every invocation again.
func TestWindowsFollowTheRateLokiAccepts(t *testing.T) {
	q := NewQueue(1000, 1<<20, nil)
	p := &lokitest.Pusher{}
	d := NewDispatcher(q, p, DispatcherConfig{})
	d.pace.limited()
	d.pace.limited() // two 429s: 200 ms between requests
	if got := d.pace.current(); got != 2*paceMin {
		t.Fatalf("pace %s after two 429s, want %s", got, 2*paceMin)
	}
	q.Put(lines("a", 1))
	if rep := d.Push(t.Context(), BeforeNext); rep.Skipped {
		t.Fatalf("the first window was skipped: %+v", rep)
	}
	q.Put(lines("b", 1))
	if rep := d.Push(t.Context(), BeforeNext); !rep.Skipped || !rep.Paced {
		t.Fatalf("a window right after a request pushed: %+v", rep)
	}
	time.Sleep(d.pace.current())
	if rep := d.Push(t.Context(), BeforeNext); rep.Skipped || rep.Delivered != 1 {
		t.Fatalf("the window after the pace did not push what waited: %+v", rep)
	}
	for range 4 {
		d.pace.accepted()
	}
	if got := d.pace.current(); got != 0 {
		t.Fatalf("pace %s after Loki took requests again, want none", got)
	}
}
