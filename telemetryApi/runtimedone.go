package telemetryApi

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrRuntimeDoneLost says WaitRuntimeDone gave up: Lambda dropped records
// during the invocation waited for and no telemetry came for
// ListenerConfig.LostAfter.
var ErrRuntimeDoneLost = errors.New("records were dropped by Lambda (platform.logsDropped) and no telemetry followed: the runtimeDone may have been among them")

// WaitRuntimeDone blocks until platform.runtimeDone for requestID has been
// received, or ctx ends. By then every line of that invocation is queued.
// When Lambda has reported records dropped during that invocation, and then
// sends nothing for LostAfter, it returns ErrRuntimeDoneLost instead of
// waiting on.
func (l *Listener) WaitRuntimeDone(ctx context.Context, requestID string) (RuntimeDone, error) {
	// Quiet is counted from the wait's start at the earliest: a batch from
	// before a freeze says nothing about this invocation.
	begun := time.Now()
	for {
		rd, ok, dropped, changed := l.done.take(requestID, begun)
		if ok {
			return rd, nil
		}
		var lost *time.Timer
		var lostC <-chan time.Time
		if dropped && l.cfg.LostAfter > 0 {
			from := begun
			if last := l.LastReceived(); last.After(from) {
				from = last
			}
			quiet := time.Since(from)
			if quiet >= l.cfg.LostAfter {
				return RuntimeDone{}, fmt.Errorf("waiting for platform.runtimeDone of %s: %w", requestID, ErrRuntimeDoneLost)
			}
			lost = time.NewTimer(l.cfg.LostAfter - quiet)
			lostC = lost.C
		}
		select {
		case <-changed:
		case <-lostC:
		case <-ctx.Done():
		}
		if lost != nil {
			lost.Stop()
		}
		if ctx.Err() != nil {
			return RuntimeDone{}, fmt.Errorf("waiting for platform.runtimeDone of %s: %w", requestID, ctx.Err())
		}
	}
}

// runtimeDoneTracker remembers runtimeDone events until the lifecycle asks
// for them (it may ask before or after one arrives), and the order in which
// platform.start, platform.runtimeDone and platform.logsDropped arrived:
// records dropped after an invocation's start may include its runtimeDone,
// records dropped before it (the tail of the previous invocation, reported
// after the thaw) cannot.
type runtimeDoneTracker struct {
	mu      sync.Mutex
	seen    map[string]RuntimeDone
	changed chan struct{} // closed and replaced at every event of interest

	// seq numbers the events in arrival order; started maps a request ID
	// to its platform.start's number.
	seq                   int64
	started               map[string]int64
	lastDone, lastDropped int64
	lastDroppedAt         time.Time
}

// maxTracked bounds the request IDs remembered for invocations nobody waits
// for (an invocation whose wait already timed out, say).
const maxTracked = 64

func (t *runtimeDoneTracker) init() {
	t.changed = make(chan struct{})
}

// signal records a runtimeDone and wakes the waiters.
func (t *runtimeDoneTracker) signal(rd RuntimeDone) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil || len(t.seen) >= maxTracked {
		t.seen = make(map[string]RuntimeDone)
	}
	t.seen[rd.RequestID] = rd
	t.seq++
	t.lastDone = t.seq
	t.wakeLocked()
}

// start records an invocation's platform.start.
func (t *runtimeDoneTracker) start(requestID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.started == nil || len(t.started) >= maxTracked {
		t.started = make(map[string]int64)
	}
	t.seq++
	t.started[requestID] = t.seq
	t.wakeLocked()
}

// dropped records a platform.logsDropped that arrived at now.
func (t *runtimeDoneTracker) dropped(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	t.lastDropped = t.seq
	t.lastDroppedAt = now
	t.wakeLocked()
}

func (t *runtimeDoneTracker) wakeLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// take returns and forgets the runtimeDone of requestID if it has arrived.
// Otherwise dropped says whether records were dropped during that
// invocation: after its platform.start, or, when its start was not seen
// (dropped too, perhaps), after the last runtimeDone and since the wait
// began at begun. changed is closed at the next event of interest.
func (t *runtimeDoneTracker) take(requestID string, begun time.Time) (rd RuntimeDone, ok, dropped bool, changed <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if rd, ok = t.seen[requestID]; ok {
		delete(t.seen, requestID)
		delete(t.started, requestID)
		return rd, true, false, t.changed
	}
	if start, ok := t.started[requestID]; ok {
		dropped = t.lastDropped > start
	} else {
		dropped = t.lastDropped > t.lastDone && !t.lastDroppedAt.Before(begun)
	}
	return RuntimeDone{}, false, dropped, t.changed
}
