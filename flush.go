package main

import (
	"context"
	"sync"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/config"
)

// flusher pushes in the background, for the flush strategies that do not
// push between runtimeDone and /next: periodic, adaptive while invocations
// come quickly, and Managed Instances (no INVOKE events at all there). A
// push cut off by a freeze fails on its timeout after the thaw and its lines
// are requeued and sent again; Loki ignores exact duplicates.
type flusher struct {
	x        *extension
	mode     config.FlushMode
	managed  bool
	interval time.Duration

	kickc  chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	lastInvoke time.Time
}

func newFlusher(x *extension) *flusher {
	f := &flusher{x: x, mode: x.cfg.Flush.Mode, managed: x.cfg.ManagedInstances, interval: x.cfg.Flush.Interval, kickc: make(chan struct{}, 1)}
	if f.managed && f.mode != config.FlushPeriodic {
		f.interval = config.DefaultManagedFlushInterval
	}
	return f
}

// timed reports whether the flusher pushes on a timer.
func (f *flusher) timed() bool { return f.managed || f.mode == config.FlushPeriodic }

// start runs the background loop for the strategies that need one.
func (f *flusher) start(ctx context.Context) {
	if !f.timed() && f.mode != config.FlushAdaptive {
		return
	}
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
	return busy
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
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-f.kickc:
		}
		flushCtx, cancel := context.WithTimeout(ctx, f.x.cfg.FlushTimeout)
		f.x.report("background", f.x.dispatcher.Flush(flushCtx, false))
		cancel()
	}
}
