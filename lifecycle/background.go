package lifecycle

import (
	"context"
	"sync"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/config"
	"github.com/lambda-loki/grafana-loki-extension/outbox"
	"github.com/lambda-loki/grafana-loki-extension/telemetryApi"
	"github.com/sirupsen/logrus"
)

// backgroundConfig is what the background pushes need of the settings.
type backgroundConfig struct {
	mode config.FlushMode
	// timed is true when pushes go on a timer (periodic mode, Managed
	// Instances), every interval; interval is also adaptive mode's
	// threshold between invocations.
	timed    bool
	interval time.Duration
	// budget bounds one background push (FLUSH_TIMEOUT_MS).
	budget time.Duration
	// awaitRuntimeDone is false when no telemetry arrives (a local stub).
	awaitRuntimeDone bool
}

// runtimeDoneWaiter is the listener, as far as the background uses it.
type runtimeDoneWaiter interface {
	WaitRuntimeDone(ctx context.Context, requestID string) (telemetryApi.RuntimeDone, error)
}

// background pushes in the background: for the flush strategies that do not
// push between runtimeDone and /next (periodic, adaptive while invocations
// come quickly, and Managed Instances, which have no INVOKE events at all),
// and in every mode for the attempts of an outage and for backlogs.
//
// In every mode it pushes as soon as a full request's worth of lines
// (LOKI_MAX_REQUEST_BYTES) is queued, while the function runs: waiting for
// runtimeDone would only add that push to the billed time after it, and an
// invocation that logs more than QUEUE_MAX_BYTES would lose its oldest lines
// to the queue's bound with Loki perfectly healthy. The push before /next
// then only has the rest to send.
//
// While Loki is away (the dispatcher's outage) it makes the attempts the
// dispatcher schedules, and nothing else: the pushes of windows and
// backlogs are skipped until Loki answers and what waited has gone out.
//
// A push cut off by a freeze fails on its timeout after the thaw and its
// lines go back to the front of the queue, to be sent again: every thaw is
// followed by a push (adaptive mode: the INVOKE that thawed the sandbox
// kicks this loop; timed modes: the tick missed while frozen fires at once;
// end mode: the push before /next; an outage: the attempt that came due
// while frozen; and SHUTDOWN drains). Loki ignores exact duplicates, so a
// push that reached Loki before the freeze costs nothing twice.
type background struct {
	cfg         backgroundConfig
	dispatcher  *outbox.Dispatcher
	runtimeDone runtimeDoneWaiter
	backlog     <-chan struct{} // a full request's worth is queued
	report      func(window string, rep outbox.Report)
	log         *logrus.Logger

	kickc  chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	lastInvoke time.Time
	// unawaited is the last invocation whose /next came before its
	// runtimeDone (adaptive mode, pushing in the background): its last
	// lines may arrive only after the thaw. awaited is what the next
	// background push waits for first.
	unawaited, awaited string
}

func newBackground(cfg backgroundConfig, d *outbox.Dispatcher, rd runtimeDoneWaiter, backlog <-chan struct{},
	report func(string, outbox.Report), log *logrus.Logger) *background {
	return &background{cfg: cfg, dispatcher: d, runtimeDone: rd, backlog: backlog, report: report, log: log, kickc: make(chan struct{}, 1)}
}

// start runs the background loop.
func (f *background) start(ctx context.Context) {
	ctx, f.cancel = context.WithCancel(ctx)
	f.done = make(chan struct{})
	go f.loop(ctx)
}

// invoked records an INVOKE and says whether the invocation's lines are
// pushed in the background (and /next called at once) instead of before
// /next. Timed modes always push in the background. Adaptive mode does while
// invocations arrive less than its interval apart, and falls back to pushing
// before /next when traffic slows.
func (f *background) invoked(requestID string) (background bool) {
	if f.cfg.timed {
		return true
	}
	if f.cfg.mode != config.FlushAdaptive {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	busy := !f.lastInvoke.IsZero() && now.Sub(f.lastInvoke) < f.cfg.interval
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
	// during this one.
	f.awaited, f.unawaited = f.unawaited, requestID
	f.kick()
	return true
}

// takeAwaited returns, once, the request whose runtimeDone the background
// push should wait for.
func (f *background) takeAwaited() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.awaited
	f.awaited = ""
	return id
}

// kick asks the background loop to push now; it never blocks.
func (f *background) kick() {
	select {
	case f.kickc <- struct{}{}:
	default:
	}
}

// stop ends the background loop and waits for a push in progress to give up.
func (f *background) stop() {
	if f.cancel == nil {
		return
	}
	f.cancel()
	<-f.done
}

func (f *background) loop(ctx context.Context) {
	defer close(f.done)
	var tick <-chan time.Time
	if f.cfg.timed {
		t := time.NewTicker(f.cfg.interval)
		defer t.Stop()
		tick = t.C
	}
	attempt := time.NewTimer(time.Hour)
	attempt.Stop()
	defer attempt.Stop()
	for {
		// While Loki is away, the next attempt is due when the dispatcher
		// says (its backoff, or Loki's Retry-After).
		var attemptC <-chan time.Time
		if at, ok := f.dispatcher.NextAttempt(); ok {
			attempt.Reset(time.Until(at))
			attemptC = attempt.C
		}
		kind := outbox.OnTimer
		select {
		case <-ctx.Done():
			return
		case <-f.dispatcher.OutageBegan():
			continue // time the first attempt
		case <-attemptC:
			kind = outbox.OutageAttempt
		case <-tick:
		case <-f.kickc:
			if id := f.takeAwaited(); id != "" && f.cfg.awaitRuntimeDone && !f.dispatcher.Outage() {
				f.awaitRuntimeDone(ctx, id)
			}
		case <-f.backlog:
			// A backlog goes out whatever DISPATCH_MIN_BATCH_SIZE says:
			// waiting for the batch would let the queue's bound drop lines.
			kind = outbox.Backlog
		}
		attempt.Stop()
		// Not cut by a deadline: the dispatcher stops starting requests
		// after its budget, and stop() ends one in flight.
		f.report("background", f.dispatcher.Push(ctx, kind))
	}
}

// awaitRuntimeDone waits, at most one flush budget, for the runtimeDone of
// an invocation that was not awaited before its /next: when it comes, every
// line of that invocation is queued. Past the budget (the sandbox was frozen
// meanwhile, or the event was lost) the push goes ahead with what is queued;
// the rest follows in a later window.
func (f *background) awaitRuntimeDone(ctx context.Context, requestID string) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.budget)
	defer cancel()
	if _, err := f.runtimeDone.WaitRuntimeDone(ctx, requestID); err != nil {
		f.log.WithError(err).Debug("pushing in the background without the previous invocation's runtimeDone")
	}
}
