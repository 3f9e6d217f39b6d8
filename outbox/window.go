package outbox

import (
	"context"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// A window (the push before /next) spends about one round trip on a Loki
// that fails: a refused connection, a 429 or a 5xx end its push at once
// (the Loki client's classify), with room for one quick retry of a 5xx or
// a reset; and a Loki that accepts the request and does not answer holds
// it at most WindowWait, or WindowWaitLatencies times the push time Loki
// has been answering in, whichever is longer. The request is not cut
// then: it goes on in the background, and its answer decides whether its
// lines are delivered or queued again, so that nothing is sent twice for
// the window's sake, and nothing lost.
const (
	// quickRetry is how long after a window's push starts a retry may
	// still start.
	quickRetry = 50 * time.Millisecond
	// DefaultWindowWait is DispatcherConfig.WindowWait's default.
	DefaultWindowWait = 250 * time.Millisecond
	// WindowWaitLatencies is how many times Loki's usual push time a
	// window waits at least, so that a Loki that is merely far away is
	// not taken for a hanging one.
	WindowWaitLatencies = 4
)

// attempt is one request's result, with what the dispatcher needs to
// judge it.
type attempt struct {
	res loki.Result
	// crossedNext says the lifecycle was in /next at some time during the
	// request: the sandbox may have been frozen meanwhile.
	crossedNext bool
	// detached says the request went on past its window, across the /next
	// the window returned to: a timeout then is Loki's, not a freeze's, as
	// the request had already gone unanswered for the window's wait.
	detached bool
}

// push sends one batch, and learns Loki's push time from its answer.
func (d *Dispatcher) push(ctx context.Context, batch []loki.Entry, until time.Time) attempt {
	nexts := d.nexts.Load()
	start := time.Now()
	d.pace.sent(start)
	res := d.pusher.PushRetrying(ctx, batch, until)
	if len(res.Undelivered) == 0 && res.Retries == 0 {
		d.learnLatency(time.Since(start))
	}
	// NextCalled and NextReturned each count one: an odd count is the
	// lifecycle inside /next, where the sandbox may be frozen. At the thaw
	// the request's timer and /next's answer come at once, so a request
	// that began inside /next may end before NextReturned counts.
	return attempt{res: res, crossedNext: d.nexts.Load() != nexts || nexts%2 == 1}
}

// pushWithin sends a window's batch and waits for the answer at most the
// window's wait, or until ctx ends. answered is false when the request
// goes on past it: it keeps the dispatcher's turn until it settles, and
// then hands DispatcherConfig.Settled its report.
func (d *Dispatcher) pushWithin(ctx context.Context, batch []loki.Entry, until time.Time) (a attempt, answered bool) {
	began := time.Now()
	done := make(chan attempt, 1)
	// Not cut by the window's end: the request's own timeout bounds it.
	reqCtx := context.WithoutCancel(ctx)
	go func() { done <- d.push(reqCtx, batch, until) }()
	wait := time.NewTimer(d.windowWait())
	defer wait.Stop()
	select {
	case a := <-done:
		return a, true
	case <-wait.C:
	case <-ctx.Done():
	}
	d.inFlight.Store(true)
	go func() {
		a := <-done
		a.detached = true
		var rep Report
		d.settle(a, &rep)
		d.finish(&rep, began) // Took is the request's whole time
		d.inFlight.Store(false)
		<-d.turn
		if d.cfg.Settled != nil {
			d.cfg.Settled(rep)
		}
	}()
	return attempt{}, false
}

// windowWait is how long a window waits for Loki's answer.
func (d *Dispatcher) windowWait() time.Duration {
	return max(d.cfg.WindowWait, WindowWaitLatencies*time.Duration(d.latency.Load()))
}

// learnLatency adds the time of a push Loki answered at once to the moving
// average, an eighth at a time, so that one slow answer does not make
// every window wait longer.
func (d *Dispatcher) learnLatency(took time.Duration) {
	for {
		old := d.latency.Load()
		next := int64(took)
		if old != 0 {
			next = old + (int64(took)-old)/8
		}
		if d.latency.CompareAndSwap(old, next) {
			return
		}
	}
}
