package main

import (
	"context"
	"sync"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/config"
)

// flusher pushes in the background, for the flush strategies that do not
// push between runtimeDone and /next: periodic, adaptive while invocations
// come quickly, and Managed Instances (no INVOKE events at all there).
//
// In every mode it also pushes as soon as a full request's worth of lines
// (LOKI_MAX_REQUEST_BYTES) is queued, while the function runs: waiting for
// runtimeDone would only add that push to the billed time after it, and an
// invocation that logs more than QUEUE_MAX_BYTES would lose its oldest lines
// to the queue's bound with Loki perfectly healthy. The push before /next
// then only has the rest to send.
//
// A push cut off by a freeze fails on its timeout after the thaw and its
// lines go back to the front of the queue. Every thaw is followed by a push
// (adaptive mode: the INVOKE that thawed the sandbox kicks this loop; timed
// modes: the tick missed while frozen fires at once; end mode: the push
// before /next; and SHUTDOWN drains), so they are sent again right after. Loki ignores exact duplicates, so a push that
// reached Loki before the freeze costs nothing twice.
type flusher struct {
	x        *extension
	mode     config.FlushMode
	managed  bool
	interval time.Duration

	kickc   chan struct{}
	backlog <-chan struct{} // a full request's worth is queued
	cancel  context.CancelFunc
	done    chan struct{}

	mu         sync.Mutex
	lastInvoke time.Time
	// unawaited is the last invocation whose /next came before its
	// runtimeDone (adaptive mode, pushing in the background): its last
	// lines may arrive only after the thaw. awaited is what the next
	// background push waits for first.
	unawaited, awaited string
}

func newFlusher(x *extension) *flusher {
	f := &flusher{x: x, mode: x.cfg.Flush.Mode, managed: x.cfg.ManagedInstances, interval: x.cfg.Flush.Interval, kickc: make(chan struct{}, 1)}
	if f.managed && f.mode != config.FlushPeriodic {
		f.interval = config.DefaultManagedFlushInterval
	}
	// A full request, or half the queue's bound when that is smaller: the
	// bound must never be reached before the backlog push starts.
	f.backlog = x.queue.NotifyBacklog(min(x.cfg.Loki.MaxRequestBytes, x.cfg.QueueMaxBytes/2))
	return f
}

// timed reports whether the flusher pushes on a timer.
func (f *flusher) timed() bool { return f.managed || f.mode == config.FlushPeriodic }

// start runs the background loop.
func (f *flusher) start(ctx context.Context) {
	ctx, f.cancel = context.WithCancel(ctx)
	f.done = make(chan struct{})
	go f.loop(ctx)
}

// inBackground decides, at an INVOKE, whether this invocation's lines are
// pushed in the background (and /next is called at once) instead of before
// /next. Adaptive mode does so while invocations arrive less than its
// interval apart, and falls back to pushing before /next when traffic slows.
func (f *flusher) inBackground() bool {
	if f.timed() {
		return true
	}
	if f.mode != config.FlushAdaptive {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	busy := !f.lastInvoke.IsZero() && now.Sub(f.lastInvoke) < f.interval
	f.lastInvoke = now
	if !busy {
		// This invocation waits for its own runtimeDone and pushes before
		// /next; that push takes the previous invocation's lines too.
		f.unawaited, f.awaited = "", ""
		return false
	}
	// The previous invocation called /next at once: its last batch, with its
	// runtimeDone, is delivered after the thaw, that is now. The background
	// push waits for it, so that the previous invocation is pushed whole
	// during this one. The lifecycle set lastRequestID to this invocation's.
	f.awaited, f.unawaited = f.unawaited, f.x.lastRequestID
	return true
}

// takeAwaited returns, once, the request whose runtimeDone the background
// push should wait for.
func (f *flusher) takeAwaited() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.awaited
	f.awaited = ""
	return id
}

// kick asks the background loop to push now; it never blocks.
func (f *flusher) kick() {
	select {
	case f.kickc <- struct{}{}:
	default:
	}
}

// stop ends the background loop and waits for a push in progress to give up.
func (f *flusher) stop() {
	if f.cancel == nil {
		return
	}
	f.cancel()
	<-f.done
}

func (f *flusher) loop(ctx context.Context) {
	defer close(f.done)
	var tick <-chan time.Time
	if f.timed() {
		t := time.NewTicker(f.interval)
		defer t.Stop()
		tick = t.C
	}
	// After a push that could not deliver, a backlog waits this long before
	// it is tried again: while Loki is away every Put would otherwise start
	// another doomed push. Kicks and ticks still push at once.
	const backlogRetry = time.Second
	var backlogPausedUntil time.Time
	for {
		kicked, backlogged := false, false
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-f.kickc:
			kicked = true
		case <-f.backlog:
			if time.Now().Before(backlogPausedUntil) {
				continue
			}
			backlogged = true
		}
		if kicked && f.x.telemetry {
			if id := f.takeAwaited(); id != "" {
				f.awaitRuntimeDone(ctx, id)
			}
		}
		flushCtx, cancel := context.WithTimeout(ctx, f.x.cfg.FlushTimeout)
		// A backlog goes out whatever DISPATCH_MIN_BATCH_SIZE says: waiting
		// for the batch would let the queue's bound drop the oldest lines.
		rep := f.x.dispatcher.Flush(flushCtx, backlogged)
		cancel()
		f.x.report("background", rep)
		if rep.Requeued > 0 {
			backlogPausedUntil = time.Now().Add(backlogRetry)
		}
	}
}

// awaitRuntimeDone waits, at most one flush budget, for the runtimeDone of
// an invocation that was not awaited before its /next: when it comes, every
// line of that invocation is queued. Past the budget (the sandbox was frozen
// meanwhile, or the event was lost) the push goes ahead with what is queued;
// the rest follows in a later window.
func (f *flusher) awaitRuntimeDone(ctx context.Context, requestID string) {
	ctx, cancel := context.WithTimeout(ctx, f.x.cfg.FlushTimeout)
	defer cancel()
	if _, err := f.x.listener.WaitRuntimeDone(ctx, requestID); err != nil {
		f.x.log.WithError(err).Debug("pushing in the background without the previous invocation's runtimeDone")
	}
}
