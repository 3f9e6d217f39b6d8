package lokitest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// Answer is how the fake Pusher answers a push.
type Answer int

const (
	// Deliver stores the entries (but see Pusher.Partial).
	Deliver Answer = iota
	// Down fails at once, as a refused connection does: the entries come
	// back undelivered and Loki unavailable, which begins an outage.
	Down
	// Hang answers nothing until the push's context ends, then returns the
	// entries undelivered and timed out; or, with Timeout set, until the
	// request's own timeout passes, which is Loki hanging: undelivered,
	// timed out and unavailable.
	Hang
	// Reject refuses the entries for good, as a 400 does.
	Reject
)

// Push is one call of the fake Pusher.
type Push struct {
	// Began is when the push was called, At when it returned.
	Began, At time.Time
	Lines     []string
	Answer    Answer
	// Bounded says the push's context had a deadline; Until is the retry
	// bound it was given.
	Bounded bool
	Until   time.Time
}

// Pusher is Loki behind the outbox's Pusher interface: it answers as told
// and records every call. Its zero value delivers everything; it is safe for
// concurrent use.
type Pusher struct {
	mu                    sync.Mutex
	answer                Answer
	retryAfter            time.Duration
	timeout               time.Duration
	stalled               bool
	undelivered, rejected int
	started, release      chan struct{}
	delay                 time.Duration
	pushes                []Push
}

// Answer sets how later pushes are answered.
func (p *Pusher) Answer(a Answer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.answer = a
}

// RetryAfter sets the pause a Down answer asks for.
func (p *Pusher) RetryAfter(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.retryAfter = d
}

// Timeout sets the request timeout of Hang answers (zero: none, they wait
// for the context); stalled says such a timeout comes far too late, as in a
// sandbox frozen during the request (loki.Result.Stalled).
func (p *Pusher) Timeout(d time.Duration, stalled bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timeout, p.stalled = d, stalled
}

// Delay makes every push take d before it answers, as a round trip does.
func (p *Pusher) Delay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// Partial makes each delivered push leave its last undelivered entries
// undelivered (as when the caller's budget ends; Loki is not unavailable)
// and reject the rejected entries before them.
func (p *Pusher) Partial(undelivered, rejected int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.undelivered, p.rejected = undelivered, rejected
}

// Hold makes pushes wait until release is called; started is closed when
// the first push begins.
func (p *Pusher) Hold() (started <-chan struct{}, release func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.started, p.release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	rel := p.release
	return p.started, func() { once.Do(func() { close(rel) }) }
}

// PushRetrying answers as set, and records the call.
func (p *Pusher) PushRetrying(ctx context.Context, entries []loki.Entry, until time.Time) loki.Result {
	began := time.Now()
	p.mu.Lock()
	answer, retryAfter, undelivered, rejected := p.answer, p.retryAfter, p.undelivered, p.rejected
	timeout, stalled, delay := p.timeout, p.stalled, p.delay
	started, release := p.started, p.release
	p.started = nil
	p.mu.Unlock()
	if started != nil {
		close(started)
	}
	if release != nil {
		<-release
	}
	time.Sleep(delay)
	res := loki.Result{Counts: loki.Counts{Requests: 1}}
	switch answer {
	case Deliver:
		n := len(entries)
		und := min(undelivered, n)
		rej := min(rejected, n-und)
		res.Undelivered = entries[n-und:]
		res.Rejected = rej
		res.Delivered = n - und - rej
		if und > 0 || rej > 0 {
			res.Err = errors.New("loki said no")
			res.RejectErr = res.Err
		}
	case Down:
		res.Undelivered, res.Unavailable, res.RetryAfter = entries, true, retryAfter
		res.Err = errors.New("connection refused")
	case Hang:
		var own <-chan time.Time
		if timeout > 0 {
			own = time.After(timeout)
		}
		res.Undelivered, res.TimedOut = entries, true
		select {
		case <-ctx.Done():
			res.Err = ctx.Err()
		case <-own:
			res.Unavailable, res.Stalled, res.Err = true, stalled, context.DeadlineExceeded
		}
	case Reject:
		res.Rejected = len(entries)
		res.Err = errors.New("400 Bad Request")
		res.RejectErr = res.Err
	}
	_, bounded := ctx.Deadline()
	p.mu.Lock()
	p.pushes = append(p.pushes, Push{Began: began, At: time.Now(), Lines: Lines(entries), Answer: answer, Bounded: bounded, Until: until})
	p.mu.Unlock()
	return res
}

// Pushes returns the calls so far, oldest first.
func (p *Pusher) Pushes() []Push {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.pushes)
}

// DeliveredBefore returns the lines of Deliver pushes that returned before
// t (all of them for a zero t), partial answers aside.
func (p *Pusher) DeliveredBefore(t time.Time) []string {
	var out []string
	for _, c := range p.Pushes() {
		if c.Answer == Deliver && (t.IsZero() || c.At.Before(t)) {
			out = append(out, c.Lines...)
		}
	}
	return out
}

// Delivered returns the lines of every Deliver push.
func (p *Pusher) Delivered() []string { return p.DeliveredBefore(time.Time{}) }
