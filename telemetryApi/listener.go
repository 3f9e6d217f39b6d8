package telemetryApi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/filter"
	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/sirupsen/logrus"
)

// MaxBodyBytes is the largest batch the listener reads. Lambda sends up to
// twice the subscription's maxBytes (at most 1 MiB) plus each event's
// envelope; anything larger is not from Lambda and gets 413.
const MaxBodyBytes = 2*1024*1024 + 10_000*256 + 64*1024

// Timeouts of the listener's connections. Lambda posts a batch in one go
// over the loopback; a client that stalls after its headers, or keeps a
// connection open without using it, is not Lambda and must not hold a
// goroutine (or the SHUTDOWN drain) for long.
const (
	DefaultReadTimeout = 10 * time.Second
	DefaultIdleTimeout = 30 * time.Second
)

// ListenerConfig says where the listener binds and what it turns into lines.
type ListenerConfig struct {
	// Addr is host:port to bind, e.g. sandbox:4323.
	Addr string
	// ShipPlatform adds START, END and REPORT lines on the platform stream.
	ShipPlatform bool
	// ShipExtension adds extensions' log lines on the extension stream.
	ShipExtension bool
	// Concurrent is true where invocations overlap (Lambda Managed
	// Instances): a text line cannot then be told apart by the invocation
	// that was running, and carries a request ID only when its record does.
	Concurrent bool
	// OnRestore is called when a SnapStart restore is reported, so that
	// connections made before the snapshot are dropped. May be nil.
	OnRestore func()
	// Log is the extension's own log.
	Log *logrus.Logger
	// Filter drops and masks function and extension lines before they are
	// queued (LOKI_MIN_LEVEL, LOKI_PROCESSING_RULES). Nil ships them all.
	Filter *filter.Filter
	// LostAfter is how long WaitRuntimeDone keeps waiting, once Lambda has
	// reported records dropped during the invocation waited for, after the
	// last batch came (or the wait began, if later): the runtimeDone may
	// have been among the records dropped, and waiting for it until the
	// deadline would be billed. Zero waits until ctx ends.
	LostAfter time.Duration
	// ReadTimeout and IdleTimeout bound a connection's request and its idle
	// keep-alive (DefaultReadTimeout and DefaultIdleTimeout when zero).
	ReadTimeout, IdleTimeout time.Duration
	// Context is what lines carry about their sandbox and invocation, as
	// structured metadata. The zero value adds none.
	Context ContextConfig
}

// ListenerStats counts what the listener received.
type ListenerStats struct {
	Batches, Events, Lines int64
	// Rejected counts batches refused (malformed, too large, wrong method).
	Rejected int64
	// SkippedEvents counts events of accepted batches that were not
	// {time, type, record} objects.
	SkippedEvents int64
	// LambdaDropped counts records Lambda reported as dropped (platform.logsDropped).
	LambdaDropped int64
}

// Listener receives Telemetry API batches. Its handler only decodes and
// queues, so it answers quickly: a slow listener makes Lambda drop records.
type Listener struct {
	cfg  ListenerConfig
	sink Sink
	srv  *http.Server
	ln   net.Listener

	// batchMu takes batches one at a time: the stamps and the invocation in
	// progress follow the order of the events. Lambda sends one batch at a
	// time anyway.
	batchMu     sync.Mutex
	stamps      *stamper
	invocations invocations
	context     contextState

	done runtimeDoneTracker

	lastReceived  atomic.Int64 // unix nanoseconds of the last batch
	batches       atomic.Int64
	events        atomic.Int64
	lines         atomic.Int64
	rejected      atomic.Int64
	lambdaDropped atomic.Int64
	skippedEvents atomic.Int64

	bufs sync.Pool // *bytes.Buffer for request bodies
}

// Sink takes the entries the listener decodes, one batch at a time and in
// the order the function wrote them. Put is called from the HTTP handler,
// so it must not block on the network: a slow listener makes Lambda drop
// records. The outbox's queue is the real one.
type Sink interface {
	Put(entries []loki.Entry)
}

// NewListener returns a listener that hands the entries it decodes to sink.
func NewListener(cfg ListenerConfig, sink Sink) *Listener {
	if cfg.Log == nil {
		cfg.Log = logrus.New()
		cfg.Log.SetOutput(io.Discard)
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}

	l := &Listener{cfg: cfg, sink: sink, stamps: newStamper(), context: newContextState(cfg.Context)}
	l.done.init()
	l.bufs.New = func() any { return new(bytes.Buffer) }
	l.srv = &http.Server{
		Handler:           l,
		ReadHeaderTimeout: min(5*time.Second, cfg.ReadTimeout),
		ReadTimeout:       cfg.ReadTimeout,
		IdleTimeout:       cfg.IdleTimeout,
	}
	return l
}

// Start binds the address and serves in the background.
func (l *Listener) Start() error {
	ln, err := net.Listen("tcp", l.cfg.Addr)
	if err != nil {
		return fmt.Errorf("telemetry listener: binding %s: %w", l.cfg.Addr, err)
	}
	l.ln = ln
	go func() {
		if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.cfg.Log.WithError(err).Error("telemetry listener stopped")
		}
	}()
	return nil
}

// Addr is the bound address, once Start has succeeded.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Shutdown stops accepting batches and waits for those being handled, at
// most until ctx ends; then it closes whatever connections are left, so
// that a client stalling mid-request costs no more than the caller's budget.
func (l *Listener) Shutdown(ctx context.Context) error {
	if err := l.srv.Shutdown(ctx); err != nil {
		_ = l.srv.Close()
		return fmt.Errorf("telemetry listener: shutdown: %w", err)
	}
	return nil
}

// LastReceived is when the last batch arrived (zero before the first).
func (l *Listener) LastReceived() time.Time {
	if n := l.lastReceived.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Stats returns the counts so far.
func (l *Listener) Stats() ListenerStats {
	return ListenerStats{
		Batches: l.batches.Load(), Events: l.events.Load(), Lines: l.lines.Load(),
		Rejected: l.rejected.Load(), SkippedEvents: l.skippedEvents.Load(), LambdaDropped: l.lambdaDropped.Load(),
	}
}

// ServeHTTP handles one batch: POST, a JSON array of events.
func (l *Listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		// A bug in decoding must not take the extension, and the function's
		// logs with it, down.
		if p := recover(); p != nil {
			l.rejected.Add(1)
			l.cfg.Log.WithField("panic", p).Error("telemetry listener: recovered from a panic while handling a batch; the batch is lost")
			w.WriteHeader(http.StatusInternalServerError)
		}
	}()
	if r.Method != http.MethodPost {
		l.rejected.Add(1)
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "only POST", http.StatusMethodNotAllowed)
		return
	}
	buf := l.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer l.bufs.Put(buf)
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, MaxBodyBytes)); err != nil {
		l.rejected.Add(1)
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			l.cfg.Log.Errorf("telemetry listener: refused a batch larger than %d bytes", MaxBodyBytes)
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		l.cfg.Log.WithError(err).Warn("telemetry listener: reading a batch failed")
		http.Error(w, "reading body failed", http.StatusBadRequest)
		return
	}
	received := time.Now()
	l.lastReceived.Store(received.UnixNano())
	var events []Event
	if err := json.Unmarshal(buf.Bytes(), &events); err != nil {
		// One odd event must not cost the batch (and the runtimeDone in it):
		// take the events one by one, as leniently as they allow.
		var skipped int
		events, skipped, err = decodeLeniently(buf.Bytes())
		if err != nil {
			l.rejected.Add(1)
			l.cfg.Log.WithError(err).Errorf("telemetry listener: dropped a malformed batch of %d bytes", buf.Len())
			http.Error(w, "malformed batch: want a JSON array of events", http.StatusBadRequest)
			return
		}
		if skipped > 0 {
			l.skippedEvents.Add(int64(skipped))
			l.cfg.Log.Warnf("telemetry listener: skipped %d events of a batch that are not {time, type, record} objects", skipped)
		}
	}
	l.batches.Add(1)
	l.events.Add(int64(len(events)))
	l.handle(events, received)
	w.WriteHeader(http.StatusOK)
}

// decodeRecord decodes a platform record, logging (at debug, since Lambda may
// add shapes) when it cannot.
func (l *Listener) decodeRecord(ev *Event, v any) bool {
	if err := json.Unmarshal(ev.Record, v); err != nil {
		l.cfg.Log.WithError(err).Debugf("telemetry listener: ignoring %s with an unexpected record", ev.Type)
		return false
	}
	return true
}

func (l *Listener) platformEntry(ev *Event, received time.Time, line, requestID string) loki.Entry {
	t, ok := parseTime(ev.Time)
	if !ok {
		t = received
	}
	inv := l.invocations.of(requestID)
	return loki.Entry{Time: t, Line: line, Stream: loki.StreamPlatform, RequestID: requestID, TraceID: inv.traceID, Meta: l.metaOf(inv)}
}

// metaOf is the shared metadata of a line of inv: the invocation's, or the
// sandbox's for a line of none (or of one no longer remembered).
func (l *Listener) metaOf(inv invocation) *loki.Metadata {
	if inv.meta != nil {
		return inv.meta
	}
	return l.context.sandbox
}

// Invoked tells the listener of an INVOKE: the alias its function ARN
// names, if any, goes on the lines of its invocation. The INVOKE and the
// invocation's platform.start come by different ways, in either order:
// lines handled before the INVOKE (its START, often) carry no alias.
func (l *Listener) Invoked(requestID, invokedFunctionArn string) {
	alias := l.context.alias(invokedFunctionArn)
	if alias == "" || requestID == "" {
		return
	}
	l.batchMu.Lock()
	defer l.batchMu.Unlock()
	if !l.invocations.alias(requestID, alias) {
		l.context.invoked(requestID, alias)
	}
}
