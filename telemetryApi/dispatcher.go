package telemetryApi

import (
	"context"
	"fmt"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// Pusher delivers entries; *loki.Client is the real one.
type Pusher interface {
	Push(ctx context.Context, entries []loki.Entry) loki.Result
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

// FlushKind says why a flush runs, which decides what it pushes and whether
// an outage holds it back.
type FlushKind int

const (
	// FlushWindow is an invocation's push (before /next, or on the
	// background timer): it waits for the minimum batch, and is skipped
	// while Loki is away, so that an outage costs the function no time.
	FlushWindow FlushKind = iota
	// FlushBacklog pushes as soon as a full request's worth is queued,
	// whatever the minimum batch; skipped while Loki is away.
	FlushBacklog
	// FlushRetry is the background attempt of an outage, run when
	// NextAttempt says; once Loki takes lines again it pushes what waited.
	FlushRetry
	// FlushDrain pushes everything, outage or not: SHUTDOWN.
	FlushDrain
)

// DispatcherConfig tunes a Dispatcher; zero values take the defaults.
type DispatcherConfig struct {
	// MinBatch is how many entries a FlushWindow waits for (default 1).
	MinBatch int
	// CatchUpBytes is how much may wait once Loki is back for windows to
	// push again: more than that is pushed in the background first, so that
	// the backlog of an outage is not pushed in billed time (default one
	// request, 1 MiB).
	CatchUpBytes int
	// RetryMin and RetryMax bound the wait between background attempts
	// during an outage (DefaultRetryMin, DefaultRetryMax).
	RetryMin, RetryMax time.Duration
}

// Defaults of DispatcherConfig's retry bounds: the first attempt a second
// after the failure, then doubling, up to half a minute, which keeps an
// outage's retries from thousands of sandboxes gentle on a Loki coming back.
const (
	DefaultRetryMin = time.Second
	DefaultRetryMax = 30 * time.Second
)

// Dispatcher moves queued entries to a Pusher when the lifecycle says so,
// and keeps track of whether Loki takes them. What a flush could not deliver
// goes back to the front of the queue.
type Dispatcher struct {
	// turn admits one flush at a time (the Pusher is not concurrent); unlike
	// a mutex, waiting for it ends with the caller's context.
	turn   chan struct{}
	queue  *Queue
	pusher Pusher
	cfg    DispatcherConfig
	outage outage
}

// NewDispatcher returns a dispatcher that flushes q to p.
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
	d := &Dispatcher{turn: make(chan struct{}, 1), queue: q, pusher: p, cfg: cfg}
	d.outage.init(cfg.RetryMin, cfg.RetryMax)
	return d
}

// FlushReport says what one flush did, for one log line per window.
type FlushReport struct {
	// Skipped is true when nothing was pushed on purpose: fewer than the
	// minimum batch queued, or Loki away (Outage says so).
	Skipped bool
	// Delivered, Rejected and Truncated add up the pushes' results;
	// Unconfirmed entries were in pushes Loki refused in part without
	// saying how many.
	Delivered, Rejected, Truncated, Unconfirmed int
	// Requeued entries were not delivered in time and wait for the next window.
	Requeued int
	// Dropped entries (and bytes) were thrown away because the queue was full.
	Dropped, DroppedBytes int
	// Spilled entries went to the spill file for the queue's memory bound.
	Spilled int
	// Remaining is what the queue holds after the flush.
	Remaining int
	// Requests and Retries count HTTP requests to Loki.
	Requests, Retries int
	// Err is the last push error, if any.
	Err error
	// RejectErr is why the first rejected entries were rejected.
	RejectErr error
	Took      time.Duration
	// Outage is set while Loki is away. OutageBegan says this flush found it
	// away (Err says why); OutageEnded that this one delivered what waited
	// for it, after OutageLasted.
	Outage, OutageBegan, OutageEnded bool
	OutageLasted                     time.Duration
}

// Flush pushes queued entries, as kind says, until the queue is empty or
// ctx ends. A flush already running (a background one) is waited for, but
// only while ctx lasts: the caller's budget bounds the wait too. It returns
// what happened; it does not log.
func (d *Dispatcher) Flush(ctx context.Context, kind FlushKind) (rep FlushReport) {
	start := time.Now()
	defer func() {
		rep.Dropped, rep.DroppedBytes, rep.Spilled = d.queue.TakeDropped()
		rep.Remaining = d.queue.Len()
		rep.Outage = d.outage.active()
		rep.Took = time.Since(start)
	}()
	if (kind == FlushWindow || kind == FlushBacklog) && d.outage.active() {
		rep.Skipped = true
		return rep
	}
	if !d.takeTurn(ctx) {
		// The entries stay queued for the next window.
		rep.Err = fmt.Errorf("waiting for the push in progress: %w", ctx.Err())
		return rep
	}
	defer func() { <-d.turn }()
	switch {
	case kind == FlushRetry && !d.outage.due(time.Now()):
		rep.Skipped = true
		return rep
	case kind == FlushRetry && d.queue.Len() == 0:
		// Nothing to try Loki with; the next lines will.
		d.outage.postpone(time.Now())
		rep.Skipped = true
		return rep
	case kind == FlushWindow && d.queue.Len() < d.cfg.MinBatch && !d.holdingTooLong():
		rep.Skipped = true
		return rep
	}
	for ctx.Err() == nil {
		batch := d.queue.TakeUpTo(takeSize, takeBytes)
		if len(batch) == 0 {
			break
		}
		res := d.pusher.Push(ctx, batch)
		rep.add(res)
		if len(res.Undelivered) > 0 {
			rep.Requeued += len(res.Undelivered)
			d.queue.Requeue(res.Undelivered)
			if res.Unavailable {
				rep.OutageBegan = d.outage.fail(time.Now(), res.RetryAfter)
			}
			break
		}
		// Loki answered: it is back. Windows push again once what waited
		// is down to a request's worth; until then the background pushes it.
		if lasted, ended := d.outage.answered(time.Now(), d.queue.Bytes() <= d.cfg.CatchUpBytes); ended {
			rep.OutageEnded, rep.OutageLasted = true, lasted
		}
		if kind == FlushRetry && d.outage.active() && d.queue.Bytes() <= d.cfg.CatchUpBytes {
			break
		}
	}
	return rep
}

// add adds up one push's result.
func (rep *FlushReport) add(res loki.Result) {
	rep.Delivered += res.Delivered
	rep.Rejected += res.Rejected
	rep.Unconfirmed += res.Unconfirmed
	rep.Truncated += res.Truncated
	rep.Requests += res.Requests
	rep.Retries += res.Retries
	if res.Err != nil {
		rep.Err = res.Err
	}
	if rep.RejectErr == nil {
		rep.RejectErr = res.RejectErr
	}
}

// Outage reports whether Loki is away: windows are then skipped, and the
// background makes the attempts.
func (d *Dispatcher) Outage() bool { return d.outage.active() }

// NextAttempt is when the next background attempt of an outage is due;
// false when Loki is not away.
func (d *Dispatcher) NextAttempt() (time.Time, bool) { return d.outage.nextAttempt() }

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

// takeTurn waits for the flush in progress, if any, to end; false when ctx
// ended first. A free turn is taken even with ctx already over, so that the
// flush still reports what the queue dropped.
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
