// Command grafana-loki-extension is an AWS Lambda extension that ships the
// function's logs to Grafana Loki through the Lambda Telemetry API.
//
// The lifecycle follows the flush protocol of the design: register, listen,
// subscribe, then for every INVOKE wait for the runtime to finish, push the
// invocation's lines to Loki and only then call /next, so that nothing waits
// in a frozen sandbox. At SHUTDOWN it drains everything and exits in time.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/config"
	"github.com/lambda-loki/grafana-loki-extension/extensionApi"
	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/telemetryApi"
	"github.com/sirupsen/logrus"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version = "dev"

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
	// lostRuntimeDoneQuiet is how long, past the buffering timeout, an
	// INVOKE keeps waiting for a runtimeDone after Lambda reported dropped
	// records and then went quiet: long enough for a batch in flight, short
	// against an invocation's billed deadline.
	lostRuntimeDoneQuiet = 250 * time.Millisecond
	// maxNextFailures is how many failed /next calls in a row make the
	// extension report exit/error and stop: the Extensions API answers 500
	// only when the sandbox is beyond saving (contract §1.4).
	maxNextFailures = 3
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-version" || os.Args[1] == "--version") {
		fmt.Println(version)
		return
	}
	os.Exit(run())
}

func run() int {
	// Lambda ends extensions with SHUTDOWN and then SIGKILL; a SIGTERM or an
	// interrupt comes from a person running it by hand, and is treated as a
	// shutdown.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	cfg, cfgErr := config.Load(os.LookupEnv)
	log := newLog(cfg.LogLevel)
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		// The extension shares the function's memory. Without a limit the
		// garbage collector lets the heap grow to twice what is live, so a
		// full queue would cost several times QUEUE_MAX_BYTES.
		debug.SetMemoryLimit(int64(cfg.QueueMaxBytes)*3/2 + 24<<20)
	}
	ext := extensionApi.NewClient(cfg.RuntimeAPI)

	events := []extensionApi.EventType{extensionApi.Invoke, extensionApi.Shutdown}
	if cfg.ManagedInstances {
		// Managed Instances refuse INVOKE registrations (contract §4).
		events = []extensionApi.EventType{extensionApi.Shutdown}
	}
	name := filepath.Base(os.Args[0])
	if _, err := ext.Register(ctx, name, events); err != nil {
		log.WithError(err).Error("registering with the Extensions API failed")
		return 1
	}
	log.WithFields(logrus.Fields{"version": version, "name": name}).Debug("registered")

	cfg, cfgErr = loadSecrets(ctx, os.LookupEnv, cfg, cfgErr, log)
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
// /extension/init/error so that the deployment fails visibly (contract §1.3).
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

// extension is the running extension: the lifecycle's state and the parts
// it drives.
type extension struct {
	cfg        config.Config
	log        *logrus.Logger
	ext        *extensionApi.Client
	listener   *telemetryApi.Listener
	queue      *telemetryApi.Queue
	dispatcher *telemetryApi.Dispatcher
	loki       *loki.Client
	// telemetry is false when the Telemetry API is a local stub that never
	// delivers anything (it answered 202): then nothing is awaited.
	telemetry bool
	flusher   *flusher
	totals    totals

	lastRequestID string
}

// setup builds the Loki client, starts the listener and subscribes to the
// Telemetry API; all of it before the first /next, as the contract requires.
func setup(ctx context.Context, cfg config.Config, ext *extensionApi.Client, log *logrus.Logger) (*extension, error) {
	client, err := loki.New(cfg.Loki)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errInvalidConfig, err)
	}
	q := telemetryApi.NewQueue(cfg.QueueMaxEntries, cfg.QueueMaxBytes)
	host := "sandbox"
	if cfg.SAMLocal {
		host = ""
	}
	l := telemetryApi.NewListener(telemetryApi.ListenerConfig{
		Addr:          net.JoinHostPort(host, strconv.Itoa(cfg.ListenerPort)),
		ShipPlatform:  cfg.ShipPlatformLogs,
		ShipExtension: cfg.ShipExtensionLogs,
		// Lambda cuts a batch at timeoutMs at the latest; a quiet well past
		// that after dropped records means the runtimeDone is not coming.
		LostAfter: time.Duration(cfg.Buffering.TimeoutMs)*time.Millisecond + lostRuntimeDoneQuiet,
		OnRestore: func() {
			// The snapshot may be restored on another host, long after it
			// was taken: a connection kept alive from before it is dead, and
			// a push on it would hang until it times out.
			client.CloseIdleConnections()
			log.Debug("restored from a SnapStart snapshot: dropped the connections to Loki made before it")
		},
		Log: log,
	}, q)
	if err := l.Start(); err != nil {
		return nil, fmt.Errorf("%w (another extension may listen there: set TELEMETRY_LISTENER_PORT to a free port)", err)
	}
	x := &extension{
		cfg: cfg, log: log, ext: ext, listener: l, queue: q, loki: client, telemetry: true,
		dispatcher: telemetryApi.NewDispatcher(q, client, cfg.DispatchMinBatchSize),
	}
	x.flusher = newFlusher(x)

	types := []string{"platform", "function"}
	if cfg.ShipExtensionLogs {
		types = append(types, "extension")
	}
	schema := telemetryApi.SchemaVersion
	if cfg.ManagedInstances {
		schema = telemetryApi.SchemaVersionManagedIn
	}
	err = telemetryApi.Subscribe(ctx, cfg.RuntimeAPI, ext.ExtensionID(), telemetryApi.Subscription{
		SchemaVersion: schema,
		Types:         types,
		Buffering: telemetryApi.Buffering{
			MaxItems: cfg.Buffering.MaxItems, MaxBytes: cfg.Buffering.MaxBytes, TimeoutMs: cfg.Buffering.TimeoutMs,
		},
		Destination: telemetryApi.Destination{Protocol: "HTTP", URI: "http://sandbox.localdomain:" + strconv.Itoa(cfg.ListenerPort) + "/"},
	})
	switch {
	case errors.Is(err, telemetryApi.ErrNotSupported):
		log.Warnf("%v: this looks like a local emulator (SAM, the runtime interface emulator); no telemetry will arrive, so the extension only follows the lifecycle", err)
		x.telemetry = false
	case err != nil:
		_ = l.Shutdown(ctx)
		return nil, fmt.Errorf("subscribing to the Telemetry API: %w", err)
	}
	return x, nil
}

// run is the lifecycle loop: one event at a time, until SHUTDOWN.
func (x *extension) run(ctx context.Context) int {
	x.flusher.start(ctx)
	for failures := 0; ; {
		ev, err := x.ext.Next(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			x.onShutdown(extensionApi.Event{EventType: extensionApi.Shutdown, ShutdownReason: "signal"})
			return 0
		case err != nil:
			failures++
			x.log.WithError(err).Error("asking the Extensions API for the next event failed")
			if failures >= maxNextFailures {
				// The sandbox is beyond saving: push what can be pushed, count
				// the rest, then say why the extension stops.
				x.onShutdown(extensionApi.Event{EventType: extensionApi.Shutdown, ShutdownReason: "next failed"})
				_ = x.ext.ExitError(ctx, "Extension.NextFailed", err)
				return 1
			}
			time.Sleep(100 * time.Millisecond)
		case ev.IsShutdown():
			x.onShutdown(ev)
			return 0
		case ev.IsInvoke():
			failures = 0
			x.onInvoke(ctx, ev)
		default:
			x.log.Warnf("ignoring an unknown event type %q", ev.EventType)
		}
	}
}

// onInvoke runs between an INVOKE and the next /next: wait until the runtime
// is done (all of the invocation's lines are then queued), push, return.
// Everything here is bounded by the invocation's deadline.
func (x *extension) onInvoke(ctx context.Context, ev extensionApi.Event) {
	x.lastRequestID = ev.RequestID
	deadline := ev.Deadline().Add(-invokeMargin)
	if ev.DeadlineMs == 0 {
		// Lambda always sends one; some emulators do not.
		deadline = time.Now().Add(x.cfg.FlushTimeout)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if x.flusher.inBackground() {
		// Pushing happens in the background while the function runs; calling
		// /next right away adds no billed time. Adaptive mode pushes the
		// previous invocation now; the timed modes keep to their timer.
		if !x.flusher.timed() {
			x.flusher.kick()
		}
		return
	}
	if x.telemetry {
		rd, err := x.listener.WaitRuntimeDone(ctx, ev.RequestID)
		switch {
		case errors.Is(err, telemetryApi.ErrRuntimeDoneLost):
			x.log.WithError(err).Warn("pushing what is queued without the runtimeDone; any later lines of this invocation go out in the next window")
		case err != nil:
			x.log.WithError(err).Warn("the runtime did not finish before the invocation's deadline; pushing what is queued")
		case rd.Status == "failure" || rd.Status == "timeout":
			// Lambda resets the sandbox now (contract §1.5): SHUTDOWN follows
			// and its deadline is already running. Going to /next at once
			// leaves that whole budget to the drain, which pushes these lines.
			return
		}
	}
	flushCtx, cancelFlush := context.WithTimeout(ctx, x.cfg.FlushTimeout)
	defer cancelFlush()
	x.report("invoke", x.dispatcher.Flush(flushCtx, false))
}

// onShutdown drains: keep the listener open while Lambda delivers the last
// batches, push everything whatever the batch size, stop the listener, and
// return well before the deadline.
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
	x.flusher.stop()

	reason := ev.Reason()
	if reason == "timeout" || reason == "failure" {
		// Users search for timeouts and crashes first; this line is there
		// even when the runtime never reported the invocation's end.
		line := "SHUTDOWN Reason: " + reason
		if x.lastRequestID != "" {
			line += " RequestId: " + x.lastRequestID
		}
		x.queue.Put([]loki.Entry{{Time: start, Line: line, Stream: loki.StreamFunction}})
	}
	quiet := time.Duration(x.cfg.Buffering.TimeoutMs)*time.Millisecond + lateTelemetry
	for x.telemetry {
		x.report("shutdown", x.dispatcher.Flush(ctx, true))
		last := x.listener.LastReceived()
		if last.Before(start) {
			last = start
		}
		if ctx.Err() != nil || (x.queue.Len() == 0 && time.Since(last) >= quiet) {
			break
		}
		sleep(ctx, 5*time.Millisecond)
	}
	if err := x.listener.Shutdown(ctx); err != nil {
		x.log.WithError(err).Warn("stopping the telemetry listener")
	}
	x.report("shutdown", x.dispatcher.Flush(ctx, true))

	fields := x.totals.fields()
	fields["reason"] = reason
	fields["took"] = time.Since(start).Round(time.Millisecond).String()
	fields["lambdaDropped"] = x.listener.Stats().LambdaDropped
	if left := x.queue.Len(); left > 0 {
		fields["lost"] = left
		x.log.WithFields(fields).Errorf("shutting down with %d lines undelivered: Loki could not take them before the shutdown deadline", left)
		return
	}
	x.log.WithFields(fields).Info("shut down")
}

// idle follows the lifecycle without shipping anything, so that a
// misconfigured extension never stops the function from running.
func idle(ctx context.Context, ext *extensionApi.Client, log *logrus.Logger) int {
	for failures := 0; ; {
		ev, err := ext.Next(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return 0
		case err != nil:
			failures++
			log.WithError(err).Error("asking the Extensions API for the next event failed")
			if failures >= maxNextFailures {
				// Exiting unannounced would be an Extension.Crash (contract §1.5).
				_ = ext.ExitError(ctx, "Extension.NextFailed", err)
				return 1
			}
			time.Sleep(100 * time.Millisecond)
		case ev.IsShutdown():
			return 0
		}
	}
}

// totals add up the flushes over the extension's life; the background
// flusher and the lifecycle both report.
type totals struct {
	mu                                      sync.Mutex
	delivered, rejected, dropped, truncated int
}

func (t *totals) add(rep telemetryApi.FlushReport) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.delivered += rep.Delivered
	t.rejected += rep.Rejected
	t.dropped += rep.Dropped
	t.truncated += rep.Truncated
}

func (t *totals) fields() logrus.Fields {
	t.mu.Lock()
	defer t.mu.Unlock()
	return logrus.Fields{"delivered": t.delivered, "rejected": t.rejected, "dropped": t.dropped, "truncated": t.truncated}
}

// report logs one flush: quietly when all went well, once per window with
// the reason when lines were rejected, requeued or dropped.
func (x *extension) report(window string, rep telemetryApi.FlushReport) {
	x.totals.add(rep)
	log := x.log.WithFields(logrus.Fields{
		"window": window, "delivered": rep.Delivered, "queued": rep.Remaining,
		"requests": rep.Requests, "retries": rep.Retries, "took": rep.Took.Round(time.Microsecond).String(),
	})
	if rep.Dropped > 0 {
		log.Warnf("dropped the %d oldest lines (%d bytes): the queue reached QUEUE_MAX_ENTRIES=%d or QUEUE_MAX_BYTES=%d while Loki could not take them",
			rep.Dropped, rep.DroppedBytes, x.cfg.QueueMaxEntries, x.cfg.QueueMaxBytes)
	}
	if rep.Rejected > 0 {
		log.WithError(rep.RejectErr).Errorf("Loki rejected %d lines; they are not retried", rep.Rejected)
	}
	if rep.Requeued > 0 {
		log.WithError(rep.Err).Warnf("%d lines could not be delivered in this window; they stay queued for the next one", rep.Requeued)
	}
	if rep.Truncated > 0 {
		log.Infof("truncated %d lines longer than LOKI_MAX_LINE_BYTES=%d", rep.Truncated, x.cfg.Loki.MaxLineBytes)
	}
	// Not at SHUTDOWN, where a line per flush would, with SHIP_EXTENSION_LOGS,
	// come back as a line to push and keep the drain from ever going quiet.
	if rep.Requests > 0 && window != "shutdown" {
		log.Debug("flushed")
	}
}

func newLog(level logrus.Level) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(os.Stdout) // Lambda sends stdout to CloudWatch
	log.SetLevel(level)
	log.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true, TimestampFormat: time.RFC3339Nano})
	return log
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
