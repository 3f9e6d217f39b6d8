package outbox

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// Pusher delivers entries; *loki.Client is the real one. It retries what
// may pass until ctx ends, but starts no retry after until (when not zero).
type Pusher interface {
	PushRetrying(ctx context.Context, entries []loki.Entry, until time.Time) loki.Result
}

// takeSize and takeBytes bound what one push takes from the queue: about
// one request of Loki's recommended size (the Loki client splits further if
// its own limit is smaller). Taking more would not make fewer requests, and
// while Loki is slow or away the entries taken are held twice over: outside
// the queue's bound, and again by the queue refilling behind them.
const (
	takeSize  = 10_000
	takeBytes = 1 << 20
)

// Occasion says why a push runs, which decides what it pushes and whether
// an outage holds it back.
type Occasion int

// The background kinds (OnTimer, Backlog, OutageAttempt) stop starting
// requests once DispatcherConfig.Budget has passed, but never cut one in
// flight: a request cut short may have been stored all the same, and Loki
// recognises a resent entry only while it is among its stream's newest.
// The others end with their context, which bounds the billed time.
const (
	// BeforeNext is an invocation's push before /next: it waits for the
	// minimum batch, and is skipped while Loki is away, so that an outage
	// costs the function no time.
	BeforeNext Occasion = iota
	// OnTimer is the background counterpart of BeforeNext (periodic and
	// adaptive modes, Managed Instances).
	OnTimer
	// Backlog pushes as soon as a full request's worth is queued,
	// whatever the minimum batch; skipped while Loki is away.
	Backlog
	// OutageAttempt is the background attempt of an outage, run when
	// NextAttempt says; once Loki takes lines again it pushes what waited.
	OutageAttempt
	// Shutdown pushes everything, outage or not: SHUTDOWN.
	Shutdown
)

func (k Occasion) background() bool { return k == OnTimer || k == Backlog || k == OutageAttempt }

// DispatcherConfig tunes a Dispatcher; zero values take the defaults.
type DispatcherConfig struct {
	// MinBatch is how many entries a push BeforeNext waits for (default 1).
	MinBatch int
	// CatchUpBytes is how much may wait once Loki is back for windows to
	// push again: more than that is pushed in the background first, so that
	// the backlog of an outage is not pushed in billed time (default one
	// request, 1 MiB).
	CatchUpBytes int
	// RetryMin and RetryMax bound the wait between background attempts
	// during an outage (DefaultRetryMin, DefaultRetryMax).
	RetryMin, RetryMax time.Duration
	// Budget is how long a background push starts new requests
	// (DefaultBudget).
	Budget time.Duration
	// WindowWait is the least a window waits for Loki to answer a request
	// (DefaultWindowWait); it waits longer when Loki's answers have been
	// taking long (WindowWaitLatencies times their average). Past that the
	// request goes on in the background and the window ends.
	WindowWait time.Duration
	// Settled, when set, is given the report of a window's request that
	// went on past its window, when it settles (Loki answered, or it timed
	// out). It may run on any goroutine.
	Settled func(Report)
}

// DefaultBudget is DispatcherConfig.Budget's default.
const DefaultBudget = 2 * time.Second

// Defaults of DispatcherConfig's retry bounds: the first attempt a second
// after the failure, then doubling, up to half a minute, which keeps an
// outage's retries from thousands of sandboxes gentle on a Loki coming back.
const (
	DefaultRetryMin = time.Second
	DefaultRetryMax = 30 * time.Second
)

// Dispatcher moves queued entries to a Pusher when the lifecycle says so,
// and keeps track of whether Loki takes them. What a push could not deliver
// goes back to the front of the queue.
type Dispatcher struct {
	// turn admits one push at a time (the Pusher is not concurrent); unlike
	// a mutex, waiting for it ends with the caller's context.
	turn   chan struct{}
	queue  *Queue
	pusher Pusher
	cfg    DispatcherConfig
	outage outage
	// nexts counts the lifecycle's calls to /next: a push in flight while
	// it changed may have been cut by a freeze, if it also outlived its own
	// timeout by far.
	nexts atomic.Int64
	// inFlight is set while a window's request goes on past its window.
	inFlight atomic.Bool
	// pace spaces window requests while Loki limits the rate.
	pace pace
	// latency is the push time Loki has been answering in (nanoseconds, a
	// moving average), which sets how long a window waits for an answer.
	latency atomic.Int64
}

// NewDispatcher returns a dispatcher that pushes what q holds to p.
func NewDispatcher(q *Queue, p Pusher, cfg DispatcherConfig) *Dispatcher {
	cfg.MinBatch = max(cfg.MinBatch, 1)
	if cfg.CatchUpBytes <= 0 {
		cfg.CatchUpBytes = takeBytes
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryMin)
	if cfg.Budget <= 0 {
		cfg.Budget = DefaultBudget
	}
	if cfg.WindowWait <= 0 {
		cfg.WindowWait = DefaultWindowWait
	}
	d := &Dispatcher{turn: make(chan struct{}, 1), queue: q, pusher: p, cfg: cfg}
	d.outage.init(cfg.RetryMin, cfg.RetryMax)
	return d
}

// Report says what one push did, for one log line per window.
type Report struct {
	// Skipped is true when nothing was pushed on purpose: fewer than the
	// minimum batch queued, Loki away (Outage says so), or Loki limiting
	// the rate (Paced).
	Skipped, Paced bool
	// Counts add up the requests' results.
	loki.Counts
	// Requeued entries were not delivered in time and wait for the next window.
	Requeued int
	// Drops are what the queue dropped (by reason) and spilled meanwhile.
	Drops
	// Remaining is what the queue holds after the push.
	Remaining int
	// InFlight entries are in a request that went on past the window,
	// neither delivered nor requeued yet: DispatcherConfig.Settled says
	// what became of them.
	InFlight int
	// Err is the last push error, if any.
	Err error
	// RejectErr is why the first rejected entries were rejected.
	RejectErr error
	// MetadataRefused is set once in the extension's life, by the push in
	// which Loki first refused structured metadata (the lines went again
	// without it, and do from then on).
	MetadataRefused error
	Took            time.Duration
	// Outage is set while Loki is away. OutageBegan says this push found it
	// away (Err says why); OutageEnded that this one delivered what waited
	// for it, after OutageLasted.
	Outage, OutageBegan, OutageEnded bool
	OutageLasted                     time.Duration
}

// Push pushes queued entries, as the occasion says, until the queue is
// empty or ctx ends. A push already running (a background one) is waited
// for, but only while ctx lasts: the caller's budget bounds the wait too. It
// returns what happened; it does not log.
func (d *Dispatcher) Push(ctx context.Context, kind Occasion) (rep Report) {
	start := time.Now()
	defer d.finish(&rep, start)
	if d.skipsUnturned(kind, start, &rep) {
		return rep
	}
	if !d.takeTurn(ctx) {
		// The entries stay queued for the next window.
		rep.Err = fmt.Errorf("waiting for the push in progress: %w", ctx.Err())
		return rep
	}
	if !d.pushInTurn(ctx, kind, start, &rep) {
		<-d.turn
	}
	return rep
}

// skipsUnturned reports whether a push of kind is skipped without waiting
// for its turn: a window or a timed push while Loki is away, or while Loki
// limits the rate and the pace says not yet; a window while a window's
// request goes on past it.
func (d *Dispatcher) skipsUnturned(kind Occasion, now time.Time, rep *Report) bool {
	switch {
	case (kind == BeforeNext || kind == OnTimer || kind == Backlog) && d.outage.active():
		rep.Skipped = true
	case kind == BeforeNext && d.inFlight.Load():
		// Loki has not answered that request yet: this window does not
		// wait for it either.
		rep.Skipped = true
	case (kind == BeforeNext || kind == OnTimer) && !d.pace.allows(now):
		// These lines go with the next request.
		rep.Skipped, rep.Paced = true, true
	}
	return rep.Skipped
}

// pushInTurn is Push once it has the turn. It reports whether it handed
// the turn on: a window's request that goes on past the window gives it
// back when it settles.
func (d *Dispatcher) pushInTurn(ctx context.Context, kind Occasion, start time.Time, rep *Report) (handedOff bool) {
	switch {
	case kind == OutageAttempt && !d.outage.due(time.Now()):
		rep.Skipped = true
		return false
	case kind == OutageAttempt && d.queue.Len() == 0:
		// Nothing to try Loki with; the next lines will.
		d.outage.postpone(time.Now())
		rep.Skipped = true
		return false
	case (kind == BeforeNext || kind == OnTimer) && d.queue.Len() < d.cfg.MinBatch && !d.holdingTooLong():
		rep.Skipped = true
		return false
	case kind == Shutdown:
		d.drain(ctx, rep)
		return false
	}
	// A window retries only what a moment may cure (quickRetry); background
	// pushes retry within their budget, and an outage's attempt not at
	// all: its pace is the backoff's.
	retryUntil := start.Add(quickRetry)
	switch {
	case kind == OutageAttempt:
		retryUntil = start
	case kind.background():
		retryUntil = start.Add(d.cfg.Budget)
	}
	for ctx.Err() == nil && !(kind.background() && time.Since(start) >= d.cfg.Budget) {
		batch := d.queue.TakeUpTo(takeSize, takeBytes)
		if len(batch) == 0 {
			return false
		}
		a := attempt{}
		if kind == BeforeNext {
			var answered bool
			if a, answered = d.pushWithin(ctx, batch, retryUntil); !answered {
				// The request goes on past the window; it settles, and
				// gives the turn back, when Loki answers or it times out.
				rep.InFlight = len(batch)
				return true
			}
		} else {
			a = d.push(ctx, batch, retryUntil)
		}
		if d.settle(a, rep) {
			return false
		}
	}
	return false
}

// settle books one request's result into rep: what it did not deliver goes
// back to the front of the queue, and the outage follows Loki's answer. It
// reports whether the push stops here.
func (d *Dispatcher) settle(a attempt, rep *Report) (stop bool) {
	res := a.res
	rep.add(res)
	switch {
	case res.RateLimited:
		d.pace.limited()
	case len(res.Undelivered) == 0 && res.Requests > 0:
		d.pace.accepted()
	}
	if len(res.Undelivered) > 0 {
		rep.Requeued += len(res.Undelivered)
		d.queue.Requeue(res.Undelivered)
		switch {
		case res.Unavailable && res.TimedOut && res.Stalled && a.crossedNext && !a.detached:
			// Frozen mid-push: the request outlived its own timeout by far
			// more than a loaded machine delays a timer, which only a
			// stopped process does, and the sandbox could freeze, as /next
			// was called meanwhile. Try again now that it is thawed. A
			// request that only crossed a /next says nothing of a freeze:
			// a busy function calls /next during every request.
			d.outage.retryNow()
		case res.Unavailable:
			rep.OutageBegan = d.outage.fail(time.Now(), res.RetryAfter)
		}
		return true
	}
	// Loki answered: it is back. Windows push again once what waited is
	// down to a request's worth; until then the background pushes it.
	if lasted, ended := d.outage.answered(time.Now(), d.queue.Bytes() <= d.cfg.CatchUpBytes); ended {
		rep.OutageEnded, rep.OutageLasted = true, lasted
	}
	return false
}

// finish adds to rep what the queue and the outage say after a push that
// began at start.
func (d *Dispatcher) finish(rep *Report, start time.Time) {
	rep.Drops = d.queue.TakeDrops()
	rep.Remaining = d.queue.Len()
	rep.Outage = d.outage.active()
	rep.Took = time.Since(start)
}

// add adds up one push's result.
func (rep *Report) add(res loki.Result) {
	rep.Counts.Add(res.Counts)
	if res.Err != nil {
		rep.Err = res.Err
	}
	if rep.RejectErr == nil {
		rep.RejectErr = res.RejectErr
	}
	if res.MetadataRefused != nil {
		rep.MetadataRefused = res.MetadataRefused
	}
}

// NextCalled marks the lifecycle's call to /next, and NextReturned its
// return: the sandbox may freeze in between, and a push in flight across
// either mark may fail for that alone.
func (d *Dispatcher) NextCalled() { d.nexts.Add(1) }

// NextReturned marks the return of the lifecycle's /next; see NextCalled.
func (d *Dispatcher) NextReturned() { d.nexts.Add(1) }

// Outage reports whether Loki is away: windows are then skipped, and the
// background makes the attempts.
func (d *Dispatcher) Outage() bool { return d.outage.active() }

// NextAttempt is when the next background attempt of an outage is due;
// false when Loki is not away.
func (d *Dispatcher) NextAttempt() (time.Time, bool) { return d.outage.nextAttempt() }

// PausedUntil is the time Loki asked, with Retry-After in its last answer,
// not to be pushed before; zero when it asked nothing or has answered since.
func (d *Dispatcher) PausedUntil() time.Time { return d.outage.pausedUntil() }

// OutageBegan is signalled (without blocking, signals do not pile up) when
// an outage begins, so that the background loop starts timing its
// attempts.
func (d *Dispatcher) OutageBegan() <-chan struct{} { return d.outage.began }

// maxHold is how old the oldest queued line may grow before it is pushed
// whatever the minimum batch size. Loki takes a line only up to about an
// hour older than the newest line of its stream, which the function's other
// sandboxes keep moving forward; a line held longer would be refused.
const maxHold = 30 * time.Minute

// holdingTooLong reports whether the oldest queued entry is past maxHold.
func (d *Dispatcher) holdingTooLong() bool {
	oldest, ok := d.queue.Oldest()
	return ok && !oldest.IsZero() && time.Since(oldest) > maxHold
}

// takeTurn waits for the push in progress, if any, to end; false when ctx
// ended first. A free turn is taken even with ctx already over, so that the
// push still reports what the queue dropped.
func (d *Dispatcher) takeTurn(ctx context.Context) bool {
	select {
	case d.turn <- struct{}{}:
		return true
	default:
	}
	select {
	case d.turn <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}
