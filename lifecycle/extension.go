package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/config"
	"github.com/lambda-loki/grafana-loki-extension/extensionApi"
	"github.com/lambda-loki/grafana-loki-extension/filter"
	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/outbox"
	"github.com/lambda-loki/grafana-loki-extension/outbox/spill"
	"github.com/lambda-loki/grafana-loki-extension/telemetryApi"
	"github.com/sirupsen/logrus"
)

// extension is the running extension: the lifecycle's state and the parts
// it drives.
type extension struct {
	cfg        config.Config
	log        *logrus.Logger
	ext        *extensionApi.Client
	listener   *telemetryApi.Listener
	queue      *outbox.Queue
	dispatcher *outbox.Dispatcher
	// telemetry is false when the Telemetry API is a local stub that never
	// delivers anything (it answered 202): then nothing is awaited.
	telemetry  bool
	background *background
	totals     totals
	// filter drops and masks lines in the listener; its counts go into the
	// shutdown summary. Nil when nothing is filtered.
	filter *filter.Filter

	lastRequestID string
	// leftovers is what an earlier process left in the spill; added counts
	// the lines the extension wrote itself. Both go into the summary.
	leftovers spill.Leftovers
	added     int
	// pushedEarly is set once the SHUTDOWN drain has pushed before the end
	// of a pause Loki asked for.
	pushedEarly bool
}

// setup builds the Loki client and the extension's parts, all before the
// first /next, as the contract requires.
func setup(ctx context.Context, cfg config.Config, ext *extensionApi.Client, log *logrus.Logger) (*extension, error) {
	client, err := loki.New(cfg.Loki)
	if err != nil {
		return nil, fmt.Errorf("%w: Loki settings: %w", errInvalidConfig, err)
	}
	// The snapshot may be restored on another host, long after it was
	// taken: a connection kept alive from before it is dead, and a push on
	// it would hang until it times out.
	onRestore := func() {
		client.CloseIdleConnections()
		log.Debug("restored from a SnapStart snapshot: dropped the connections to Loki made before it")
	}
	return newExtension(ctx, cfg, ext, log, client, onRestore)
}

// newExtension starts the listener and subscribes to the Telemetry API,
// pushing through pusher; onRestore runs at a SnapStart restore.
func newExtension(ctx context.Context, cfg config.Config, ext *extensionApi.Client, log *logrus.Logger, pusher outbox.Pusher, onRestore func()) (*extension, error) {
	f, err := filter.New(cfg.Filter)
	if err != nil {
		return nil, fmt.Errorf("%w: LOKI_PROCESSING_RULES: %w", errInvalidConfig, err)
	}
	sp := openSpill(cfg, log)
	q := outbox.NewQueue(cfg.QueueMaxEntries, cfg.QueueMaxBytes, sp)
	host := "sandbox"
	if cfg.SAMLocal {
		host = ""
	}
	l := telemetryApi.NewListener(telemetryApi.ListenerConfig{
		Addr:          net.JoinHostPort(host, strconv.Itoa(cfg.ListenerPort)),
		ShipPlatform:  cfg.ShipPlatformLogs,
		ShipExtension: cfg.ShipExtensionLogs,
		Concurrent:    cfg.ManagedInstances,
		// Lambda cuts a batch at timeoutMs at the latest; a quiet well past
		// that after dropped records means the runtimeDone is not coming.
		LostAfter: time.Duration(cfg.Buffering.TimeoutMs)*time.Millisecond + lostRuntimeDoneQuiet,
		OnRestore: onRestore,
		Log:       log,
		Filter:    f,
		Context:   cfg.Context,
	}, q)
	if err := l.Start(); err != nil {
		q.Close()
		return nil, fmt.Errorf("%w (another extension may listen there: set TELEMETRY_LISTENER_PORT to a free port)", err)
	}
	// A full request, or half the queue's bound when that is smaller: the
	// bound must never be reached before the backlog push starts.
	backlogBytes := min(cfg.Loki.MaxRequestBytes, cfg.QueueMaxBytes/2)
	x := &extension{cfg: cfg, log: log, ext: ext, listener: l, queue: q, telemetry: true, filter: f, leftovers: sp.Leftovers()}
	x.dispatcher = outbox.NewDispatcher(q, pusher, outbox.DispatcherConfig{
		MinBatch: cfg.DispatchMinBatchSize, CatchUpBytes: backlogBytes, RetryMax: cfg.OutageRetryMax, Budget: cfg.FlushTimeout,
		WindowWait: cfg.WindowWait,
		// A window's request that went on past it is reported when it
		// settles, as its window's would have been.
		Settled: func(rep outbox.Report) { x.report("invoke", rep) },
	})

	types := []string{"platform", "function"}
	if cfg.ShipExtensionLogs {
		types = append(types, "extension")
	}
	schema := telemetryApi.SchemaVersion
	if cfg.ManagedInstances {
		schema = telemetryApi.SchemaVersionManagedIn
	}
	port := l.Addr().(*net.TCPAddr).Port
	err = telemetryApi.Subscribe(ctx, cfg.RuntimeAPI, ext.ExtensionID(), telemetryApi.Subscription{
		SchemaVersion: schema,
		Types:         types,
		Buffering: telemetryApi.Buffering{
			MaxItems: cfg.Buffering.MaxItems, MaxBytes: cfg.Buffering.MaxBytes, TimeoutMs: cfg.Buffering.TimeoutMs,
		},
		Destination: telemetryApi.Destination{Protocol: "HTTP", URI: "http://sandbox.localdomain:" + strconv.Itoa(port) + "/"},
	})
	switch {
	case errors.Is(err, telemetryApi.ErrNotSupported):
		log.Warnf("%v: this looks like a local emulator (SAM, the runtime interface emulator); no telemetry will arrive, so the extension only follows the lifecycle", err)
		x.telemetry = false
	case err != nil:
		_ = l.Shutdown(ctx)
		q.Close()
		return nil, fmt.Errorf("subscribing to the Telemetry API: %w", err)
	}

	interval := cfg.Flush.Interval
	if cfg.ManagedInstances && cfg.Flush.Mode != config.FlushPeriodic {
		interval = config.DefaultManagedFlushInterval
	}
	x.background = newBackground(backgroundConfig{
		mode:             cfg.Flush.Mode,
		timed:            cfg.ManagedInstances || cfg.Flush.Mode == config.FlushPeriodic,
		interval:         interval,
		budget:           cfg.FlushTimeout,
		awaitRuntimeDone: x.telemetry,
	}, x.dispatcher, l, q.NotifyBacklog(backlogBytes), x.report, log)
	return x, nil
}

// openSpill opens the spill file, or says once why there is none.
func openSpill(cfg config.Config, log *logrus.Logger) *spill.Spill {
	if cfg.SpillMaxBytes == 0 {
		return nil
	}
	sp, err := spill.Open(spill.Config{Dir: cfg.SpillDir, MaxBytes: cfg.SpillMaxBytes})
	if err != nil {
		log.WithError(err).Warn("no spill file (QUEUE_SPILL_DIR): while Loki is away, lines past QUEUE_MAX_BYTES are dropped instead")
		return nil
	}
	logLeftovers(log, sp.Leftovers())
	return sp
}
