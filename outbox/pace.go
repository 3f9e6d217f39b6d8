package outbox

import (
	"sync"
	"time"
)

// A function's sandboxes share Loki's limits (the tenant's ingestion rate,
// the stream's), and have no schedule in common. So each paces its own
// requests by what Loki accepts, additive increase and multiplicative
// decrease as TCP does: every 429 doubles the least time between its
// windows' requests, and every request Loki takes shortens it by a step,
// until windows push every invocation again. A window that comes sooner
// is skipped at no cost to the function: its lines go with the next
// request. Together with the outage's jittered backoff this lets a fleet
// settle near the limit instead of retrying in waves.
const (
	// paceMin is the least time between requests once Loki has limited
	// the rate: about the push time of a loaded Loki.
	paceMin = 100 * time.Millisecond
	// paceMax bounds it: a window's lines wait at most about this long
	// for the next request.
	paceMax = 5 * time.Second
	// paceStep is how much each accepted request takes off.
	paceStep = 50 * time.Millisecond
)

// pace is the least time between a sandbox's window requests; zero until
// Loki rate-limits it.
type pace struct {
	mu       sync.Mutex
	interval time.Duration
	last     time.Time // the last request's start
}

// allows reports whether a window may push at now.
func (p *pace) allows(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.interval == 0 || now.Sub(p.last) >= p.interval
}

// sent records a request that began at now.
func (p *pace) sent(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = now
}

// limited halves the request rate: Loki answered 429.
func (p *pace) limited() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.interval = min(max(2*p.interval, paceMin), paceMax)
}

// accepted grows the rate back by a step: Loki took a request.
func (p *pace) accepted() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.interval -= paceStep; p.interval < paceMin {
		p.interval = 0
	}
}

// current is the least time between window requests now.
func (p *pace) current() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.interval
}
