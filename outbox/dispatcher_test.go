package outbox

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/lokitest"
	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// newPusher returns a fake Loki whose pushes each leave their last
// undelivered entries undelivered and reject the rejected before them.
func newPusher(undelivered, rejected int) *lokitest.Pusher {
	p := &lokitest.Pusher{}
	p.Partial(undelivered, rejected)
	return p
}

// downPusher returns a fake Loki that is away: every push fails at once.
func downPusher() *lokitest.Pusher {
	p := &lokitest.Pusher{}
	p.Answer(lokitest.Down)
	return p
}

// lastUntil is the retry bound the last push was given.
func lastUntil(p *lokitest.Pusher) time.Time {
	pushes := p.Pushes()
	if len(pushes) == 0 {
		return time.Time{}
	}
	return pushes[len(pushes)-1].Until
}

func TestDispatcherPush(t *testing.T) {
	tests := []struct {
		name          string
		queued        int
		minBatch      int
		kind          Occasion
		undelivered   int
		rejected      int
		wantPushes    int
		wantDelivered int
		wantRemaining int
		wantSkipped   bool
		heldLong      bool // the lines were written longer than maxHold ago
	}{
		{"below the minimum batch waits", 3, 10, BeforeNext, 0, 0, 0, 0, 3, true, false},
		{"at the minimum batch pushes", 10, 10, BeforeNext, 0, 0, 1, 10, 0, false, false},
		{"a drain (SHUTDOWN) pushes whatever is there", 3, 10, Shutdown, 0, 0, 1, 3, 0, false, false},
		{"a backlog pushes whatever the minimum batch", 3, 10, Backlog, 0, 0, 1, 3, 0, false, false},
		{"undelivered go back to the queue", 5, 1, BeforeNext, 2, 0, 1, 3, 2, false, false},
		{"rejected are counted, not requeued", 5, 1, BeforeNext, 0, 2, 1, 3, 0, false, false},
		{"more than one take", takeSize + 5, 1, BeforeNext, 0, 0, 2, takeSize + 5, 0, false, false},
		{"empty queue", 0, 1, Shutdown, 0, 0, 0, 0, 0, false, false},
		// Loki refuses lines about an hour older than its stream's newest.
		{"below the minimum batch but held past maxHold pushes", 3, 10, BeforeNext, 0, 0, 1, 3, 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQueue(1_000_000, 1<<30, nil)
			entries := lines("l", tt.queued)
			if tt.heldLong {
				for i := range entries {
					entries[i].Time = time.Now().Add(-maxHold - time.Minute)
				}
			}
			q.Put(entries)
			p := newPusher(tt.undelivered, tt.rejected)
			d := NewDispatcher(q, p, DispatcherConfig{MinBatch: tt.minBatch})
			rep := d.Push(t.Context(), tt.kind)
			if len(p.Pushes()) != tt.wantPushes || rep.Delivered != tt.wantDelivered || rep.Remaining != tt.wantRemaining || rep.Skipped != tt.wantSkipped {
				t.Fatalf("pushes %d, report %+v", len(p.Pushes()), rep)
			}
			if rep.Rejected != tt.rejected && tt.queued > 0 && !tt.wantSkipped {
				t.Fatalf("rejected %d", rep.Rejected)
			}
			if !rep.Skipped && rep.Requeued != rep.Remaining {
				t.Fatalf("requeued %d but %d remain", rep.Requeued, rep.Remaining)
			}
			if rep.Outage || rep.OutageBegan {
				t.Fatalf("an outage without Loki failing: %+v", rep)
			}
		})
	}
}

func TestDispatcherRequeuedGoFirstNextTime(t *testing.T) {
	q := NewQueue(100, 1<<20, nil)
	q.Put(lines("a", 3))
	p := newPusher(2, 0)
	d := NewDispatcher(q, p, DispatcherConfig{})
	d.Push(t.Context(), BeforeNext)
	q.Put(lines("b", 1))
	p.Partial(0, 0)
	d.Push(t.Context(), BeforeNext)
	if got := p.Pushes()[1].Lines; !slices.Equal(got, []string{"a1", "a2", "b0"}) {
		t.Fatalf("second push %v", got)
	}
}

func TestDispatcherStopsWhenContextEnds(t *testing.T) {
	q := NewQueue(100, 1<<20, nil)
	q.Put(lines("a", 3))
	p := &lokitest.Pusher{}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	rep := NewDispatcher(q, p, DispatcherConfig{}).Push(ctx, Shutdown)
	if len(p.Pushes()) != 0 || rep.Remaining != 3 {
		t.Fatalf("pushed %d, remaining %d", len(p.Pushes()), rep.Remaining)
	}
}

// An outage, step by step: a window that fails because Loki is away begins
// it; windows and backlogs then cost nothing (no push); the background
// attempts come at the backoff's pace, or Loki's Retry-After; the first
// answer lets them push what waited, and windows resume once it is out.
func TestDispatcherOutage(t *testing.T) {
	q := NewQueue(100_000, 1<<30, nil)
	p := downPusher()
	d := NewDispatcher(q, p, DispatcherConfig{RetryMin: 40 * time.Millisecond, RetryMax: 100 * time.Millisecond, CatchUpBytes: 10 * loki.Entry{Line: "a0"}.Size()})
	q.Put(lines("a", 5))

	rep := d.Push(t.Context(), BeforeNext)
	if !rep.OutageBegan || !rep.Outage || rep.Requeued != 5 || !d.Outage() {
		t.Fatalf("the failing window did not begin an outage: %+v", rep)
	}
	select {
	case <-d.OutageBegan():
	default:
		t.Fatal("no signal for the background loop")
	}
	first, _ := d.NextAttempt()
	if wait := time.Until(first); wait < 15*time.Millisecond || wait > 45*time.Millisecond {
		t.Fatalf("first attempt in %s, want the shortest backoff (20–40 ms)", wait)
	}
	q.Put(lines("b", 20))
	for _, kind := range []Occasion{BeforeNext, Backlog, OutageAttempt} {
		if rep := d.Push(t.Context(), kind); !rep.Skipped || rep.Requests != 0 {
			t.Fatalf("kind %d pushed during the outage before the attempt was due: %+v", kind, rep)
		}
	}
	if n := len(p.Pushes()); n != 1 {
		t.Fatalf("%d pushes", n)
	}

	// Attempts fail; the backoff grows up to its cap.
	var waits []time.Duration
	for range 4 {
		at, _ := d.NextAttempt()
		time.Sleep(time.Until(at))
		start := time.Now()
		if rep := d.Push(t.Context(), OutageAttempt); rep.Skipped || rep.OutageBegan || rep.Requests != 1 {
			t.Fatalf("attempt: %+v", rep)
		}
		next, _ := d.NextAttempt()
		waits = append(waits, next.Sub(start))
	}
	for i, w := range waits {
		if w > 100*time.Millisecond+5*time.Millisecond || i == 0 && w < 40*time.Millisecond {
			t.Fatalf("backoffs %v: want doubling from 40 ms, capped at 100 ms", waits)
		}
	}

	// Loki asks for a pause longer than the backoff: it is honoured.
	p.RetryAfter(300 * time.Millisecond)
	at, _ := d.NextAttempt()
	time.Sleep(time.Until(at))
	d.Push(t.Context(), OutageAttempt)
	if next, _ := d.NextAttempt(); time.Until(next) < 250*time.Millisecond {
		t.Fatalf("next attempt in %s despite Retry-After of 300 ms", time.Until(next))
	}
	if paused := d.PausedUntil(); time.Until(paused) < 250*time.Millisecond || time.Until(paused) > 300*time.Millisecond {
		t.Fatalf("paused for %s, want the 300 ms Loki asked", time.Until(paused))
	}

	// Loki is back: the attempt pushes what waited, and the outage ends.
	p.Answer(lokitest.Deliver)
	at, _ = d.NextAttempt()
	time.Sleep(time.Until(at))
	rep = d.Push(t.Context(), OutageAttempt)
	if !rep.OutageEnded || rep.Outage || rep.Delivered != 25 || rep.Remaining != 0 || d.Outage() {
		t.Fatalf("the outage did not end with what waited delivered: %+v", rep)
	}
	if _, ok := d.NextAttempt(); ok {
		t.Fatal("attempts still scheduled")
	}
	if paused := d.PausedUntil(); !paused.IsZero() {
		t.Fatalf("still paused until %s after Loki answered", paused)
	}
	q.Put(lines("c", 1))
	if rep := d.Push(t.Context(), BeforeNext); rep.Skipped || rep.Delivered != 1 {
		t.Fatalf("windows did not resume: %+v", rep)
	}
}

// Once Loki answers, the outage lasts until what waited is down to a
// request's worth, pushed in the background: a big backlog must not be
// pushed before /next, in billed time.
func TestDispatcherCatchesUpInTheBackground(t *testing.T) {
	q := NewQueue(1_000_000, 1<<30, nil)
	p := downPusher()
	d := NewDispatcher(q, p, DispatcherConfig{RetryMin: time.Millisecond, RetryMax: time.Millisecond})
	q.Put(lines("a", 3*takeSize))
	d.Push(t.Context(), BeforeNext)
	p.Answer(lokitest.Deliver)
	time.Sleep(2 * time.Millisecond)
	ctx, cancel := context.WithCancel(t.Context())
	pushes := 0
	p2 := &countingPusher{Pusher: p, after: 1, cancel: cancel, n: &pushes}
	d.pusher = p2
	rep := d.Push(ctx, OutageAttempt) // the budget ends after one request of several
	if rep.OutageEnded || !d.Outage() || rep.Delivered == 0 || rep.Remaining == 0 {
		t.Fatalf("after one request: %+v", rep)
	}
	if rep := d.Push(t.Context(), BeforeNext); !rep.Skipped {
		t.Fatalf("a window pushed the backlog: %+v", rep)
	}
	d.pusher = p
	if rep := d.Push(t.Context(), OutageAttempt); !rep.OutageEnded || rep.Remaining != 0 {
		t.Fatalf("catching up: %+v", rep)
	}
}

// countingPusher cancels a context after a number of pushes.
type countingPusher struct {
	Pusher
	after  int
	cancel context.CancelFunc
	n      *int
}

func (c *countingPusher) PushRetrying(ctx context.Context, entries []loki.Entry, _ time.Time) loki.Result {
	res := c.Pusher.PushRetrying(ctx, entries, time.Time{})
	if *c.n++; *c.n >= c.after {
		c.cancel()
	}
	return res
}

// SHUTDOWN drains whatever the outage says; a rejection (Loki answered,
// refusing for good) ends the outage too.
func TestDispatcherDrainAndRejectionDuringAnOutage(t *testing.T) {
	q := NewQueue(1000, 1<<20, nil)
	p := downPusher()
	d := NewDispatcher(q, p, DispatcherConfig{RetryMin: time.Hour})
	q.Put(lines("a", 3))
	d.Push(t.Context(), BeforeNext)
	p.Answer(lokitest.Deliver)
	p.Partial(0, 1)
	rep := d.Push(t.Context(), Shutdown)
	if rep.Delivered != 2 || rep.Rejected != 1 || !rep.OutageEnded || d.Outage() {
		t.Fatalf("%+v", rep)
	}
}

// The drain retries while its context lasts; a window only what a moment
// may cure; background pushes retry within their budget; an outage's
// attempt does not retry at all.
func TestDispatcherBoundsRetries(t *testing.T) {
	const budget = 700 * time.Millisecond
	tests := []struct {
		kind      Occasion
		outage    bool
		wantUntil func(start time.Time) (lo, hi time.Time)
	}{
		{BeforeNext, false, func(s time.Time) (time.Time, time.Time) {
			return s.Add(quickRetry), s.Add(quickRetry + 50*time.Millisecond)
		}},
		{Shutdown, false, func(time.Time) (time.Time, time.Time) { return time.Time{}, time.Time{} }},
		{OnTimer, false, func(s time.Time) (time.Time, time.Time) { return s.Add(budget), s.Add(budget + 50*time.Millisecond) }},
		{Backlog, false, func(s time.Time) (time.Time, time.Time) { return s.Add(budget), s.Add(budget + 50*time.Millisecond) }},
		{OutageAttempt, true, func(s time.Time) (time.Time, time.Time) { return s, s.Add(50 * time.Millisecond) }},
	}
	for _, tt := range tests {
		q := NewQueue(100, 1<<20, nil)
		p := &lokitest.Pusher{}
		d := NewDispatcher(q, p, DispatcherConfig{Budget: budget, RetryMin: time.Millisecond, RetryMax: time.Millisecond})
		if tt.outage {
			q.Put(lines("a", 1))
			p.Answer(lokitest.Down)
			d.Push(t.Context(), BeforeNext)
			p.Answer(lokitest.Deliver)
			time.Sleep(2 * time.Millisecond)
		}
		q.Put(lines("b", 1))
		start := time.Now()
		d.Push(t.Context(), tt.kind)
		lo, hi := tt.wantUntil(start)
		if until := lastUntil(p); until.Before(lo) || until.After(hi) || lo.IsZero() != until.IsZero() {
			t.Errorf("kind %d: retries until %v, want between %v and %v", tt.kind, until, lo, hi)
		}
	}
}
