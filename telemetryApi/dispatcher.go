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

// Dispatcher moves queued entries to a Pusher when the lifecycle says so.
// What a flush could not deliver goes back to the front of the queue for the
// next window.
type Dispatcher struct {
	// turn admits one flush at a time (the Pusher is not concurrent); unlike
	// a mutex, waiting for it ends with the caller's context.
	turn     chan struct{}
	queue    *Queue
	pusher   Pusher
	minBatch int
}

// NewDispatcher returns a dispatcher that flushes q to p once at least
// minBatch entries are queued (or always, when forced).
func NewDispatcher(q *Queue, p Pusher, minBatch int) *Dispatcher {
	return &Dispatcher{turn: make(chan struct{}, 1), queue: q, pusher: p, minBatch: max(minBatch, 1)}
}

// FlushReport says what one flush did, for one log line per window.
type FlushReport struct {
	// Skipped is true when fewer than the minimum batch were queued.
	Skipped bool
	// Delivered, Rejected and Truncated add up the pushes' results.
	Delivered, Rejected, Truncated int
	// Requeued entries were not delivered in time and wait for the next window.
	Requeued int
	// Dropped entries (and bytes) were thrown away because the queue was full.
	Dropped, DroppedBytes int
	// Remaining is what the queue holds after the flush.
	Remaining int
	// Requests and Retries count HTTP requests to Loki.
	Requests, Retries int
	// Err is the last push error, if any.
	Err error
	// RejectErr is why the first rejected entries were rejected.
	RejectErr error
	Took      time.Duration
}

// Flush pushes queued entries until the queue is empty or ctx ends. Unless
// force is set, it does nothing while fewer than the minimum batch size are
// queued. A flush already running (a background one) is waited for, but
// only while ctx lasts: the caller's budget bounds the wait too. It returns
// what happened; it does not log.
func (d *Dispatcher) Flush(ctx context.Context, force bool) FlushReport {
	start := time.Now()
	var rep FlushReport
	if !d.takeTurn(ctx) {
		// The entries stay queued for the next window.
		rep.Err = fmt.Errorf("waiting for the push in progress: %w", ctx.Err())
		rep.Remaining = d.queue.Len()
		rep.Took = time.Since(start)
		return rep
	}
	defer func() { <-d.turn }()
	if !force && d.queue.Len() < d.minBatch && !d.holdingTooLong() {
		rep.Skipped = true
	}
	for !rep.Skipped && ctx.Err() == nil {
		batch := d.queue.TakeUpTo(takeSize, takeBytes)
		if len(batch) == 0 {
			break
		}
		res := d.pusher.Push(ctx, batch)
		rep.Delivered += res.Delivered
		rep.Rejected += res.Rejected
		rep.Truncated += res.Truncated
		rep.Requests += res.Requests
		rep.Retries += res.Retries
		if res.Err != nil {
			rep.Err = res.Err
		}
		if rep.RejectErr == nil {
			rep.RejectErr = res.RejectErr
		}
		if len(res.Undelivered) > 0 {
			rep.Requeued += len(res.Undelivered)
			d.queue.Requeue(res.Undelivered)
			break
		}
	}
	rep.Dropped, rep.DroppedBytes = d.queue.TakeDropped()
	rep.Remaining = d.queue.Len()
	rep.Took = time.Since(start)
	return rep
}

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
