package outbox

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// drainInFlight is how many requests the SHUTDOWN drain keeps in flight
// once Loki has taken its first. Loki takes concurrent pushes to a stream,
// and writes out of order within its window, so the backlog of an outage
// goes out at Loki's pace, not at one round trip per request; what is not
// pushed by the deadline is lost.
const drainInFlight = 4

// drain pushes everything queued, oldest first, retrying within ctx. The
// first request goes alone, so that a Loki that is away is not sent
// several at once; once Loki has taken it, drainInFlight requests go at a
// time, each taking the oldest entries left. The first failure stops it:
// its entries, and those of the requests still in flight that fail too,
// go back to the front of the queue.
func (d *Dispatcher) drain(ctx context.Context, rep *Report) {
	if ctx.Err() != nil {
		return
	}
	batch := d.queue.TakeUpTo(takeSize, takeBytes)
	if len(batch) == 0 || d.settle(d.push(ctx, batch, time.Time{}), rep) {
		return
	}
	var (
		mu   sync.Mutex // guards rep
		stop atomic.Bool
		wg   sync.WaitGroup
	)
	for range drainInFlight {
		wg.Go(func() {
			for ctx.Err() == nil && !stop.Load() {
				batch := d.queue.TakeUpTo(takeSize, takeBytes)
				if len(batch) == 0 {
					return
				}
				a := d.push(ctx, batch, time.Time{})
				mu.Lock()
				failed := d.settle(a, rep)
				mu.Unlock()
				if failed {
					stop.Store(true)
				}
			}
		})
	}
	wg.Wait()
}
