package outbox

import (
	"sync"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/retry"
)

// outage is the dispatcher's view of Loki's availability. An outage begins
// when a push fails for a reason that may pass (connection refused or
// reset, timeout, 5xx, 429) and ends once Loki answers again and what
// waited for it is pushed. During it, attempts are spaced by a capped
// exponential backoff with jitter, or by Loki's Retry-After when longer.
type outage struct {
	mu       sync.Mutex
	min, max time.Duration
	since    time.Time // zero: no outage
	failures int       // attempts failed in a row
	next     time.Time // no attempt before this
	// paused is the time Loki's last answer asked not to be pushed before
	// (Retry-After); zero when it asked nothing. Unlike next it holds no
	// backoff of ours, which the SHUTDOWN drain does not wait for.
	paused time.Time
	began  chan struct{}
}

func (o *outage) init(min, max time.Duration) {
	o.min, o.max = min, max
	o.began = make(chan struct{}, 1)
}

func (o *outage) active() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.since.IsZero()
}

// due reports whether an attempt may be made now.
func (o *outage) due(now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return !now.Before(o.next)
}

func (o *outage) nextAttempt() (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.next, !o.since.IsZero()
}

// fail records a failed push at now, Loki having asked for retryAfter (or
// zero), and schedules the next attempt. It reports whether this failure
// began an outage.
func (o *outage) fail(now time.Time, retryAfter time.Duration) (began bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	began = o.since.IsZero()
	if began {
		o.since = now
		select {
		case o.began <- struct{}{}:
		default:
		}
	}
	o.failures++
	o.next = now.Add(max(o.backoff(o.failures), retryAfter))
	o.paused = time.Time{}
	if retryAfter > 0 {
		o.paused = now.Add(retryAfter)
	}
	return began
}

// pausedUntil is the time Loki asked not to be pushed before, zero if none.
func (o *outage) pausedUntil() time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.paused
}

// backoff doubles from min to max with each failure, and spreads the wait
// between half and all of that so that sandboxes do not retry in step.
func (o *outage) backoff(failures int) time.Duration {
	d := o.max
	if shift := failures - 1; shift < 30 && o.min<<shift < o.max {
		d = o.min << shift
	}
	return retry.Jitter(d)
}

// answered records that Loki answered a push at now. Attempts may follow at
// once; the outage ends when caughtUp (what waited has gone out), and ended
// says so, with how long it lasted.
func (o *outage) answered(now time.Time, caughtUp bool) (lasted time.Duration, ended bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failures = 0
	o.next, o.paused = time.Time{}, time.Time{}
	if o.since.IsZero() || !caughtUp {
		return 0, false
	}
	lasted = now.Sub(o.since)
	o.since = time.Time{}
	return lasted, true
}

// postpone schedules the next attempt after the shortest backoff, without
// counting a failure: there was nothing to attempt with.
func (o *outage) postpone(now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.next = now.Add(o.backoff(1))
}

// retryNow makes the next attempt due at once, without counting a failure:
// the last one was cut by a freeze.
func (o *outage) retryNow() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.next = time.Time{}
}
