package telemetryApi

import (
	"context"
	"sync"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// Pusher delivers entries; *loki.Client is the real one.
type Pusher interface {
	Push(ctx context.Context, entries []loki.Entry) loki.Result
}

// takeSize is how many entries one push takes from the queue; the Loki
// client splits them further into requests of a bounded size.
const takeSize = 10_000

// Dispatcher moves queued entries to a Pusher when the lifecycle says so.
// What a flush could not deliver goes back to the front of the queue for the
// next window.
type Dispatcher struct {
	mu       sync.Mutex // one flush at a time: the Pusher is not concurrent
	queue    *Queue
	pusher   Pusher
	minBatch int
}

// NewDispatcher returns a dispatcher that flushes q to p once at least
// minBatch entries are queued (or always, when forced).
func NewDispatcher(q *Queue, p Pusher, minBatch int) *Dispatcher {
	return &Dispatcher{queue: q, pusher: p, minBatch: max(minBatch, 1)}
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
	Err  error
	Took time.Duration
}

// Flush pushes queued entries until the queue is empty or ctx ends. Unless
// force is set, it does nothing while fewer than the minimum batch size are
// queued. It returns what happened; it does not log.
func (d *Dispatcher) Flush(ctx context.Context, force bool) FlushReport {
	d.mu.Lock()
	defer d.mu.Unlock()
	start := time.Now()
	var rep FlushReport
	if !force && d.queue.Len() < d.minBatch {
		rep.Skipped = true
	}
	for !rep.Skipped && ctx.Err() == nil {
		batch := d.queue.Take(takeSize)
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
