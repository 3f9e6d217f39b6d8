package telemetryApi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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

// ListenerConfig says where the listener binds and what it turns into lines.
type ListenerConfig struct {
	// Addr is host:port to bind, e.g. sandbox:4323.
	Addr string
	// ShipPlatform adds START, END and REPORT lines on the platform stream.
	ShipPlatform bool
	// ShipExtension adds extensions' log lines on the extension stream.
	ShipExtension bool
	// OnRestore is called when a SnapStart restore is reported, so that
	// connections made before the snapshot are dropped. May be nil.
	OnRestore func()
	// Log is the extension's own log.
	Log *logrus.Logger
	// Filter drops and masks function and extension lines before they are
	// queued (LOKI_MIN_LEVEL, LOKI_PROCESSING_RULES). Nil ships them all.
	Filter *filter.Filter
	// LostAfter is how long WaitRuntimeDone keeps waiting, once Lambda has
	// reported dropped records since its last runtimeDone, after the last
	// batch came (or the wait began, if later):
	// the runtimeDone may have been among the records dropped, and waiting
	// for it until the deadline would be billed. Zero waits until ctx ends.
	LostAfter time.Duration
}

// ErrRuntimeDoneLost says WaitRuntimeDone gave up: Lambda dropped records
// since its last runtimeDone and no telemetry came for
// ListenerConfig.LostAfter.
var ErrRuntimeDoneLost = errors.New("records were dropped by Lambda (platform.logsDropped) and no telemetry followed: the runtimeDone may have been among them")

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
	cfg   ListenerConfig
	queue *Queue
	srv   *http.Server
	ln    net.Listener

	done   runtimeDoneTracker
	stamps *stamper

	lastReceived  atomic.Int64 // unix nanoseconds of the last batch
	batches       atomic.Int64
	events        atomic.Int64
	lines         atomic.Int64
	rejected      atomic.Int64
	lambdaDropped atomic.Int64
	skippedEvents atomic.Int64
	// platformSeq numbers the runtimeDone and logsDropped events in the
	// order they arrive; lastDone and lastDropped hold the latest numbers.
	// A logsDropped newer than the last runtimeDone may have swallowed the
	// runtimeDone being waited for.
	platformSeq, lastDone, lastDropped atomic.Int64

	bufs sync.Pool // *bytes.Buffer for request bodies
}

// NewListener returns a listener that queues entries into q.
func NewListener(cfg ListenerConfig, q *Queue) *Listener {
	if cfg.Log == nil {
		cfg.Log = logrus.New()
		cfg.Log.SetOutput(io.Discard)
	}
	l := &Listener{cfg: cfg, queue: q, stamps: newStamper()}
	l.done.changed = make(chan struct{})
	l.bufs.New = func() any { return new(bytes.Buffer) }
	l.srv = &http.Server{Handler: l, ReadHeaderTimeout: 5 * time.Second}
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
// most until ctx ends.
func (l *Listener) Shutdown(ctx context.Context) error {
	if err := l.srv.Shutdown(ctx); err != nil {
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

// WaitRuntimeDone blocks until platform.runtimeDone for requestID has been
// received, or ctx ends. By then every line of that invocation is queued.
// When Lambda has reported dropped records since the last runtimeDone it
// sent, and then sends nothing for LostAfter, it returns ErrRuntimeDoneLost
// instead of waiting on.
func (l *Listener) WaitRuntimeDone(ctx context.Context, requestID string) (RuntimeDone, error) {
	// Quiet is counted from the wait's start at the earliest: a batch from
	// before a freeze says nothing about this invocation.
	begun := time.Now().UnixNano()
	for {
		rd, ok, changed := l.done.take(requestID)
		if ok {
			return rd, nil
		}
		var lost *time.Timer
		var lostC <-chan time.Time
		if l.cfg.LostAfter > 0 && l.lastDropped.Load() > l.lastDone.Load() {
			quiet := time.Since(time.Unix(0, max(l.lastReceived.Load(), begun)))
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

// handle queues the batch's lines and signals platform events, in order: the
// lines an invocation wrote are queued before its runtimeDone is signalled.
func (l *Listener) handle(events []Event, received time.Time) {
	var entries []loki.Entry
	flush := func() {
		if len(entries) > 0 {
			l.lines.Add(int64(len(entries)))
			l.stamps.stamp(entries)
			l.queue.Put(entries)
			entries = nil
		}
	}
	add := func(e loki.Entry) {
		if entries == nil {
			entries = make([]loki.Entry, 0, len(events))
		}
		entries = append(entries, e)
	}
	for i := range events {
		ev := &events[i]
		switch ev.Type {
		case TypeFunction:
			if e := recordEntry(ev, loki.StreamFunction, received); l.keep(&e) {
				add(e)
			}
		case TypeExtension:
			if l.cfg.ShipExtension {
				if e := recordEntry(ev, loki.StreamExtension, received); l.keep(&e) {
					add(e)
				}
			}
		case TypePlatformStart:
			var s Start
			if l.cfg.ShipPlatform && l.decodeRecord(ev, &s) {
				add(l.platformEntry(ev, received, startLine(s)))
			}
		case TypePlatformRuntimeDone:
			var rd RuntimeDone
			// A field of an unexpected type must not cost the signal the
			// lifecycle waits for: the request ID is what counts.
			if !l.decodeRecord(ev, &rd) && rd.RequestID == "" {
				continue
			}
			if rd.Status != "" && rd.Status != "success" {
				e := l.platformEntry(ev, received, failureLine(rd))
				e.Stream = loki.StreamFunction
				add(e)
			}
			if l.cfg.ShipPlatform {
				add(l.platformEntry(ev, received, endLine(rd)))
			}
			flush()
			l.lastDone.Store(l.platformSeq.Add(1))
			l.done.signal(rd)
		case TypePlatformReport:
			var rep Report
			if l.cfg.ShipPlatform && l.decodeRecord(ev, &rep) {
				add(l.platformEntry(ev, received, reportLine(rep)))
			}
		case TypePlatformLogsDropped:
			var d LogsDropped
			if l.decodeRecord(ev, &d) {
				l.lambdaDropped.Add(d.DroppedRecords)
				l.lastDropped.Store(l.platformSeq.Add(1))
				l.done.wake()
				l.cfg.Log.WithFields(logrus.Fields{"droppedRecords": d.DroppedRecords, "droppedBytes": d.DroppedBytes}).
					Warnf("Lambda dropped log records before they reached the extension: %s", d.Reason)
			}
		case TypePlatformRestoreStart:
			if l.cfg.OnRestore != nil {
				l.cfg.OnRestore()
			}
		default:
			// Other platform events (init, extension, subscription, restore
			// reports, and types added after this was written) carry
			// nothing the extension ships.
		}
	}
	flush()
}

func (l *Listener) platformEntry(ev *Event, received time.Time, line string) loki.Entry {
	t, ok := parseTime(ev.Time)
	if !ok {
		t = received
	}
	return loki.Entry{Time: t, Line: line, Stream: loki.StreamPlatform}
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

// runtimeDoneTracker remembers runtimeDone events until the lifecycle asks
// for them. The lifecycle may ask before or after the event arrives.
type runtimeDoneTracker struct {
	mu      sync.Mutex
	seen    map[string]RuntimeDone
	changed chan struct{} // closed and replaced at every signal
}

// maxTracked bounds the runtimeDone events kept for request IDs nobody waits
// for (an invocation whose wait already timed out, say).
const maxTracked = 64

func (t *runtimeDoneTracker) signal(rd RuntimeDone) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil || len(t.seen) >= maxTracked {
		t.seen = make(map[string]RuntimeDone)
	}
	t.seen[rd.RequestID] = rd
	t.wakeLocked()
}

// wake tells waiters to look again (a logsDropped arrived, say).
func (t *runtimeDoneTracker) wake() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.wakeLocked()
}

func (t *runtimeDoneTracker) wakeLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// take returns and forgets the runtimeDone of requestID if it has arrived;
// otherwise changed is closed at the next signal.
func (t *runtimeDoneTracker) take(requestID string) (rd RuntimeDone, ok bool, changed <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rd, ok = t.seen[requestID]
	if ok {
		delete(t.seen, requestID)
	}
	return rd, ok, t.changed
}

// decodeLeniently decodes a batch that is a JSON array but not an array of
// well-formed events: each element that is an object with a string type is
// kept (a time that is not a string is left empty, so the arrival time
// stands in); the others are counted as skipped. err is set only when the
// body is not a JSON array at all.
func decodeLeniently(body []byte) (events []Event, skipped int, err error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		return nil, 0, fmt.Errorf("decoding a telemetry batch: %w", err)
	}
	events = make([]Event, 0, len(raws))
	for _, raw := range raws {
		var ev Event
		if json.Unmarshal(raw, &ev) == nil {
			if ev.Type == "" { // null, or an object that is no event
				skipped++
				continue
			}
			events = append(events, ev)
			continue
		}
		var loose struct {
			Time   json.RawMessage `json:"time"`
			Type   string          `json:"type"`
			Record json.RawMessage `json:"record"`
		}
		if json.Unmarshal(raw, &loose) != nil || loose.Type == "" {
			skipped++
			continue
		}
		ev = Event{Type: loose.Type, Record: loose.Record}
		_ = json.Unmarshal(loose.Time, &ev.Time) // a non-string time stays empty
		events = append(events, ev)
	}
	return events, skipped, nil
}

// stamper keeps entries of one stream from sharing a timestamp. Lambda
// stamps events to the millisecond, and Loki keeps only one of several
// entries whose stream, timestamp and line are equal: a line a function
// writes twice within a millisecond would otherwise be stored once. A
// repeated or slightly older time is moved just past the stream's last one,
// a nanosecond at a time, so it stays inside the same millisecond (and a
// retried push carries the same stamps, which Loki still deduplicates).
//
// Every sandbox of a function writes to the same streams, so the sandbox's
// own offset inside the millisecond (salt, drawn at random once) keeps two
// sandboxes' copies of a line written in the same millisecond apart too.
type stamper struct {
	mu   sync.Mutex
	last [3]time.Time // by loki.StreamType
	salt time.Duration
}

// newStamper returns a stamper with this sandbox's random offset, short of
// a millisecond by room for the repeats it then adds nanosecond by
// nanosecond.
func newStamper() *stamper {
	return &stamper{salt: rand.N(900 * time.Microsecond)}
}

// stamp gives a batch's entries, in order, their stamps: one lock a batch,
// since two batches may be handled at once.
func (s *stamper) stamp(entries []loki.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range entries {
		entries[i].Time = s.next(entries[i].Stream, entries[i].Time)
	}
}

// next returns the stamp for an entry of stream written at t; s.mu held.
func (s *stamper) next(stream loki.StreamType, t time.Time) time.Time {
	if t.Nanosecond()%int(time.Millisecond) == 0 {
		// Lambda's millisecond times only; a finer time (a JSON record's
		// own timestamp, say) is kept as it is.
		t = t.Add(s.salt)
	}
	i := int(stream) % len(s.last)
	last := s.last[i]
	switch {
	case t.After(last):
		s.last[i] = t
	case last.Sub(t) < time.Millisecond && last.Add(time.Nanosecond).Truncate(time.Millisecond).Equal(t.Truncate(time.Millisecond)):
		t = last.Add(time.Nanosecond)
		s.last[i] = t
	}
	return t
}
