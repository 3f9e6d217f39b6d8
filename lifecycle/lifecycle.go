// Package lifecycle is the extension's life in a sandbox, as Lambda's
// Extensions API drives it: register, start the Telemetry API listener,
// subscribe, then one event at a time until SHUTDOWN.
//
// The lifecycle follows the flush protocol of the design: for every INVOKE
// wait for the runtime to finish, push the invocation's lines to Loki and
// only then call /next, so that nothing waits in a frozen sandbox (or push
// in the background, as FLUSH_STRATEGY says). At SHUTDOWN it drains
// everything and returns in time. The rules it follows are in
// docs/lambda-runtime-contract.md.
package lifecycle

import (
	"context"
	"errors"
	"os"
	"runtime/debug"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/config"
	"github.com/lambda-loki/grafana-loki-extension/extensionApi"
	"github.com/lambda-loki/grafana-loki-extension/internal/wait"
	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/outbox"
	"github.com/lambda-loki/grafana-loki-extension/telemetryApi"
	"github.com/sirupsen/logrus"
)

// Margins kept before Lambda's deadlines, so that /next or the exit comes in
// time even when the last push is cut short.
const (
	invokeMargin   = 100 * time.Millisecond
	shutdownMargin = 300 * time.Millisecond
	// lateShutdownMargin is the margin kept when SHUTDOWN arrives with less
	// than shutdownMargin left: enough to log the summary and exit.
	lateShutdownMargin = 50 * time.Millisecond
	// lateTelemetry is how long, past the subscription's buffering timeout,
	// SHUTDOWN waits for batches Lambda may still be sending.
	lateTelemetry = 50 * time.Millisecond
	// drainReserve is the most the SHUTDOWN drain keeps before its deadline
	// for a push after waiting out a pause Loki asked for: Loki answered the
	// request that asked (429, 503), so the next should be quick.
	drainReserve = 500 * time.Millisecond
	// lostRuntimeDoneQuiet is how long, past the buffering timeout, an
	// INVOKE keeps waiting for a runtimeDone after Lambda reported records
	// dropped during it and then went quiet: long enough for a batch in
	// flight, short against an invocation's billed deadline.
	lostRuntimeDoneQuiet = 250 * time.Millisecond
	// maxNextFailures is how many failed /next calls in a row make the
	// extension report exit/error and stop: the Extensions API answers 500
	// only when the sandbox is beyond saving
	// (docs/lambda-runtime-contract.md#error-answers).
	maxNextFailures = 3
	// nextRetryPause is the pause between failed /next calls.
	nextRetryPause = 100 * time.Millisecond
)

// Process is what the lifecycle needs of the process it runs in.
type Process struct {
	// Name is the extension's name: its executable's file name in
	// /opt/extensions, which registration must give
	// (docs/lambda-runtime-contract.md#registration).
	Name string
	// Version is the build's version, logged at start.
	Version string
	// Lookup reads the environment (os.LookupEnv).
	Lookup config.LookupFunc
}

// Run is the extension's whole life: it registers, sets up, follows the
// lifecycle until SHUTDOWN (or ctx ends, which is treated as one) and
// returns the process's exit code. A configuration or setup problem is
// logged once and leaves the function working: the lifecycle goes on
// without shipping, or with STRICT_CONFIG the init fails visibly.
func Run(ctx context.Context, p Process) int {
	cfg, cfgErr := config.Load(p.Lookup)
	log := newLog(cfg.LogLevel)
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(config.MemoryLimit(cfg.QueueMaxBytes))
	}
	ext := extensionApi.NewClient(cfg.RuntimeAPI)

	events := []extensionApi.EventType{extensionApi.Invoke, extensionApi.Shutdown}
	if cfg.ManagedInstances {
		// Managed Instances refuse INVOKE registrations
		// (docs/lambda-runtime-contract.md#managed-instances).
		events = []extensionApi.EventType{extensionApi.Shutdown}
	}
	if _, err := ext.Register(ctx, p.Name, events); err != nil {
		log.WithError(err).Error("registering with the Extensions API failed")
		return 1
	}
	log.WithFields(logrus.Fields{"version": p.Version, "name": p.Name}).Info("registered")

	cfg, cfgErr = loadSecrets(ctx, p.Lookup, cfg, cfgErr, log)
	if cfgErr != nil {
		return degrade(ctx, cfg.Strict, ext, log, "Extension.ConfigInvalid", cfgErr)
	}
	x, err := setup(ctx, cfg, ext, log)
	switch {
	case errors.Is(err, errInvalidConfig):
		return degrade(ctx, cfg.Strict, ext, log, "Extension.ConfigInvalid", err)
	case err != nil:
		return degrade(ctx, cfg.Strict, ext, log, "Extension.SetupFailed", err)
	}
	return x.run(ctx)
}

// errInvalidConfig marks setup errors that a configuration change fixes.
var errInvalidConfig = errors.New("invalid configuration")

// degrade reports an init failure once and then keeps the function working:
// it follows the lifecycle without shipping, or with STRICT_CONFIG reports
// /extension/init/error so that the deployment fails visibly.
func degrade(ctx context.Context, strict bool, ext *extensionApi.Client, log *logrus.Logger, errorType string, err error) int {
	log.Error(err.Error())
	if strict {
		if err := ext.InitError(ctx, errorType, err); err != nil {
			log.WithError(err).Error("reporting the init error to Lambda failed")
		}
		return 1
	}
	log.Warn("shipping no logs in this sandbox; the function itself is not affected (set STRICT_CONFIG=true to fail the init instead)")
	return idle(ctx, ext, log)
}

// idle follows the lifecycle without shipping anything, so that a
// misconfigured extension never stops the function from running.
func idle(ctx context.Context, ext *extensionApi.Client, log *logrus.Logger) int {
	for {
		ev, err := nextEvent(ctx, ext, log)
		switch {
		case err != nil && ctx.Err() != nil:
			return 0
		case err != nil:
			// Exiting unannounced would be an Extension.Crash
			// (docs/lambda-runtime-contract.md#reset-after-a-failure).
			_ = ext.ExitError(ctx, "Extension.NextFailed", err)
			return 1
		case ev.IsShutdown():
			return 0
		}
	}
}

// nextEvent asks the Extensions API for the next event. A failed call is
// tried again after a pause; after maxNextFailures failures in a row it
// gives up with the last error. Each call starts counting anew, so only
// failures in a row count.
func nextEvent(ctx context.Context, ext *extensionApi.Client, log *logrus.Logger) (extensionApi.Event, error) {
	for failures := 1; ; failures++ {
		ev, err := ext.Next(ctx)
		if err == nil || ctx.Err() != nil {
			return ev, err
		}
		log.WithError(err).Error("asking the Extensions API for the next event failed")
		if failures >= maxNextFailures {
			return ev, err
		}
		wait.Sleep(ctx, nextRetryPause)
	}
}

// run is the lifecycle loop: one event at a time, until SHUTDOWN.
func (x *extension) run(ctx context.Context) int {
	x.background.start(ctx)
	for {
		x.dispatcher.NextCalled()
		ev, err := nextEvent(ctx, x.ext, x.log)
		x.dispatcher.NextReturned()
		switch {
		case err != nil && ctx.Err() != nil:
			x.onShutdown(extensionApi.Event{EventType: extensionApi.Shutdown, ShutdownReason: "signal"})
			return 0
		case err != nil:
			// The sandbox is beyond saving: push what can be pushed, count
			// the rest, then say why the extension stops.
			x.onShutdown(extensionApi.Event{EventType: extensionApi.Shutdown, ShutdownReason: "next failed"})
			_ = x.ext.ExitError(ctx, "Extension.NextFailed", err)
			return 1
		case ev.IsShutdown():
			x.onShutdown(ev)
			return 0
		case ev.IsInvoke():
			x.onInvoke(ctx, ev)
		default:
			x.log.Warnf("ignoring an unknown event type %q", ev.EventType)
		}
	}
}

// onInvoke runs between an INVOKE and the next /next: wait until the runtime
// is done (all of the invocation's lines are then queued), push, return.
// Everything here is bounded by the invocation's deadline. While Loki is
// away the push is skipped: the background retries deliver.
func (x *extension) onInvoke(ctx context.Context, ev extensionApi.Event) {
	x.lastRequestID = ev.RequestID
	if x.telemetry {
		x.listener.Invoked(ev.RequestID, ev.InvokedFunctionArn)
	}
	deadline := ev.Deadline().Add(-invokeMargin)
	if ev.DeadlineMs == 0 {
		// Lambda always sends one; some emulators do not.
		deadline = time.Now().Add(x.cfg.FlushTimeout)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if x.background.invoked(ev.RequestID) {
		// Pushing happens in the background while the function runs; calling
		// /next right away adds no billed time.
		return
	}
	if x.telemetry {
		rd, err := x.listener.WaitRuntimeDone(ctx, ev.RequestID)
		switch {
		case errors.Is(err, telemetryApi.ErrRuntimeDoneLost):
			x.log.WithError(err).Warn("pushing what is queued without the runtimeDone; any later lines of this invocation go out in the next window")
		case err != nil:
			// The wait used up the invocation's budget: the push below has
			// no time left and only reports what the queue dropped.
			x.log.WithError(err).Warn("the runtime did not finish before the invocation's deadline; what is queued goes out in the next window")
		case rd.Status == "failure" || rd.Status == "timeout":
			// Lambda resets the sandbox now
			// (docs/lambda-runtime-contract.md#reset-after-a-failure): SHUTDOWN
			// follows and its deadline is already running. Going to /next at
			// once leaves that whole budget to the drain, which pushes these
			// lines.
			return
		}
	}
	flushCtx, cancelFlush := context.WithTimeout(ctx, x.cfg.FlushTimeout)
	defer cancelFlush()
	x.report("invoke", x.dispatcher.Push(flushCtx, outbox.BeforeNext))
}

// onShutdown drains: keep the listener open while Lambda delivers the last
// batches, push everything whatever the batch size or an outage, stop the
// listener, and return well before the deadline.
func (x *extension) onShutdown(ev extensionApi.Event) {
	start := time.Now()
	deadline := ev.Deadline().Add(-shutdownMargin)
	switch {
	case ev.DeadlineMs == 0:
		deadline = start.Add(2*time.Second - shutdownMargin)
	case deadline.Before(start):
		// A late SHUTDOWN (after a reset, say) leaves less than the margin:
		// use what is left, never more than Lambda allows before SIGKILL.
		deadline = ev.Deadline().Add(-lateShutdownMargin)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	x.background.stop()

	reason := ev.Reason()
	if reason == "timeout" || reason == "failure" {
		// Users search for timeouts and crashes first; this line is there
		// even when the runtime never reported the invocation's end.
		line := "SHUTDOWN Reason: " + reason
		if x.lastRequestID != "" {
			line += " RequestId: " + x.lastRequestID
		}
		x.queue.Put([]loki.Entry{{Time: start, Line: line, Stream: loki.StreamFunction, RequestID: x.lastRequestID}})
		x.added++
	}
	quiet := time.Duration(x.cfg.Buffering.TimeoutMs)*time.Millisecond + lateTelemetry
	for x.telemetry {
		x.drain(ctx)
		last := x.listener.LastReceived()
		if last.Before(start) {
			last = start
		}
		if ctx.Err() != nil || (x.queue.Len() == 0 && time.Since(last) >= quiet) {
			break
		}
		wait.Sleep(ctx, 5*time.Millisecond)
	}
	if err := x.listener.Shutdown(ctx); err != nil {
		x.log.WithError(err).Warn("stopping the telemetry listener")
	}
	x.drain(ctx)
	x.summarize(reason, start, x.queue.Close())
}

// drain pushes everything queued. It waits out a pause Loki asked for
// (Retry-After), as far as the deadline allows an attempt after it; the
// outage's own backoff it does not wait for: SHUTDOWN is the last chance,
// and the drain retries within its whole budget. A pause that reaches past
// that it cuts short once, pushing as late as leaves time to; if Loki asks
// again, it is not pushed again before the deadline: a fleet shutting down
// must not hammer a Loki that asked it to slow down.
func (x *extension) drain(ctx context.Context) {
	if paused := x.dispatcher.PausedUntil(); !paused.IsZero() {
		deadline, _ := ctx.Deadline()
		latest := deadline.Add(-min(x.cfg.Loki.RequestTimeout, drainReserve))
		if paused.After(latest) {
			if x.pushedEarly {
				return
			}
			// Waiting it out would lose the lines to the deadline:
			// push, earlier than asked, as late as leaves time to.
			x.pushedEarly = true
			paused = latest
		}
		wait.Sleep(ctx, time.Until(paused))
	}
	x.report("shutdown", x.dispatcher.Push(ctx, outbox.Shutdown))
}

func newLog(level logrus.Level) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(os.Stdout) // Lambda sends stdout to CloudWatch
	log.SetLevel(level)
	log.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true, TimestampFormat: time.RFC3339Nano})
	return log
}
