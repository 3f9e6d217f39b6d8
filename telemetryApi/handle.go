package telemetryApi

import (
	"slices"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/sirupsen/logrus"
)

// handle hands the batch's lines to the sink and signals platform events, in order: the
// lines an invocation wrote are queued before its runtimeDone is signalled.
func (l *Listener) handle(events []Event, received time.Time) {
	l.batchMu.Lock()
	defer l.batchMu.Unlock()
	var p pending
	handOver := func() {
		if entries := p.take(); len(entries) > 0 {
			l.lines.Add(int64(len(entries)))
			l.stamps.stamp(entries)
			l.sink.Put(entries)
		}
	}
	for i := range events {
		ev := &events[i]
		room := len(events) - i
		switch ev.Type {
		case TypeFunction:
			if e := l.lineEntry(ev, loki.StreamFunction, received); l.keep(&e) {
				p.add(e, room)
			}
		case TypeExtension:
			if !l.cfg.ShipExtension {
				continue
			}
			if e := l.lineEntry(ev, loki.StreamExtension, received); l.keep(&e) {
				p.add(e, room)
			}
		case TypePlatformStart:
			var s Start
			if !l.decodeRecord(ev, &s) || s.RequestID == "" {
				continue
			}
			id := l.invocations.start(s, l.cfg.Concurrent, l.context.start(s.RequestID))
			l.done.start(id)
			if l.cfg.ShipPlatform {
				p.add(l.platformEntry(ev, received, startLine(s), id), room)
			}
		case TypePlatformRuntimeDone:
			l.runtimeDone(ev, received, &p, room, handOver)
		case TypePlatformReport:
			var rep Report
			if l.cfg.ShipPlatform && l.decodeRecord(ev, &rep) {
				inv := l.invocations.of(rep.RequestID)
				e := l.platformEntry(ev, received, reportLine(rep), inv.requestID)
				e.Meta = l.context.report(e.Meta, &rep)
				p.add(e, room)
			}
		case TypePlatformLogsDropped:
			l.logsDropped(ev, received)
		case TypePlatformRestoreStart:
			// Sandboxes restored from one snapshot must not share the offset
			// drawn before it.
			l.stamps.resalt()
			l.context.restore()
			if l.cfg.OnRestore != nil {
				l.cfg.OnRestore()
			}
		default:
			// Other platform events (init, extension, subscription, restore
			// reports, and types added after this was written) carry
			// nothing the extension ships.
		}
	}
	handOver()
}

// runtimeDone ends an invocation: its failure and END lines join the
// batch's lines, which are handed over before the signal, so that every
// line of the invocation is queued when the lifecycle wakes.
func (l *Listener) runtimeDone(ev *Event, received time.Time, p *pending, room int, handOver func()) {
	var rd RuntimeDone
	// A field of an unexpected type must not cost the signal the
	// lifecycle waits for: the request ID is what counts.
	if !l.decodeRecord(ev, &rd) && rd.RequestID == "" {
		return
	}
	rd.RequestID = l.invocations.of(rd.RequestID).requestID
	if rd.Status != "" && rd.Status != "success" {
		e := l.platformEntry(ev, received, failureLine(rd), rd.RequestID)
		e.Stream = loki.StreamFunction
		p.add(e, room)
	}
	if l.cfg.ShipPlatform {
		p.add(l.platformEntry(ev, received, endLine(rd), rd.RequestID), room)
	}
	handOver()
	l.invocations.end(rd.RequestID)
	l.done.signal(rd)
}

// logsDropped counts the records Lambda says it dropped, and lets a wait
// for a runtimeDone that may have been among them end early.
func (l *Listener) logsDropped(ev *Event, received time.Time) {
	var d LogsDropped
	if l.decodeRecord(ev, &d) {
		l.lambdaDropped.Add(d.DroppedRecords)
		l.done.dropped(received)
		l.cfg.Log.WithFields(logrus.Fields{"droppedRecords": d.DroppedRecords, "droppedBytes": d.DroppedBytes}).
			Warnf("Lambda dropped log records before they reached the extension: %s", d.Reason)
	}
}

// lineEntry turns a function or extension record into an entry of the
// invocation it belongs to: the one its JSON record (or text line that is a
// JSON object) names, or else the one running when it was written.
func (l *Listener) lineEntry(ev *Event, stream loki.StreamType, received time.Time) loki.Entry {
	e, requestID := recordEntry(ev, stream, received)
	inv := l.invocations.current
	if requestID != "" {
		inv = l.invocations.of(requestID)
	}
	e.RequestID, e.TraceID, e.Meta = inv.requestID, inv.traceID, l.metaOf(inv)
	return e
}

// pending collects a batch's entries until the platform event they must be
// queued before.
type pending struct {
	entries []loki.Entry
}

func (p *pending) add(e loki.Entry, room int) {
	if p.entries == nil {
		p.entries = make([]loki.Entry, 0, room)
	}
	p.entries = append(p.entries, e)
}

// take returns the entries collected so far and starts anew. The queue may
// keep them for as long as Loki is away, and it counts only their own bytes:
// a slice much shorter than its array (a batch split by many runtimeDones)
// is copied, so that no mostly empty array stays alive behind a few lines.
func (p *pending) take() []loki.Entry {
	out := p.entries
	p.entries = nil
	if cap(out) > 2*len(out)+8 {
		out = slices.Clone(out)
	}
	return out
}

// invocations follows which invocation the lines belong to. Text records
// carry no request ID: outside Managed Instances one invocation runs at a
// time, and a line belongs to the one whose platform.start came last. Trace
// IDs are remembered by request, for platform lines and JSON records that
// name their own request. Request IDs are interned, so that the entries of
// an invocation share one string instead of holding one each.
type invocations struct {
	// current is the invocation running, zero between invocations; a text
	// line takes it without a lookup.
	current invocation
	// recent maps recent request IDs to the interned ID and its trace ID
	// ("" without tracing).
	recent map[string]invocation
}

type invocation struct {
	requestID, traceID string
	// meta is the shared metadata of the invocation's lines (nil: the
	// sandbox's).
	meta *loki.Metadata
}

// start records a platform.start, with the metadata of its lines, and
// returns its interned request ID.
func (inv *invocations) start(s Start, concurrent bool, meta *loki.Metadata) string {
	if inv.recent == nil || len(inv.recent) >= maxTracked {
		inv.recent = make(map[string]invocation)
	}
	var trace string
	if s.Tracing != nil {
		trace, _ = TraceIDFromXRay(s.Tracing.Value)
	}
	known := invocation{s.RequestID, trace, meta}
	inv.recent[s.RequestID] = known
	if !concurrent {
		inv.current = known
	}
	return s.RequestID
}

// alias puts function_alias on the rest of the lines of a started
// invocation; false when requestID has not started (or is forgotten).
func (inv *invocations) alias(requestID, alias string) bool {
	known, ok := inv.recent[requestID]
	if !ok {
		return false
	}
	known.meta = known.meta.With(loki.Pair{Name: MetaFunctionAlias, Value: alias})
	inv.recent[requestID] = known
	if inv.current.requestID == requestID {
		inv.current = known
	}
	return true
}

// end records the runtimeDone of requestID: lines that follow belong to no
// invocation until the next platform.start.
func (inv *invocations) end(requestID string) {
	if inv.current.requestID == requestID {
		inv.current = invocation{}
	}
}

// of returns the invocation a record or a platform event names: its
// interned request ID and its trace ID when it is a recent one, the ID as
// given otherwise.
func (inv *invocations) of(requestID string) invocation {
	if requestID == "" {
		return invocation{}
	}
	if known, ok := inv.recent[requestID]; ok {
		return known
	}
	return invocation{requestID: requestID}
}
