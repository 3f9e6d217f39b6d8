package loki

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/afiskon/promtail-client/logproto"
	"github.com/golang/protobuf/proto"
	"github.com/golang/protobuf/ptypes/timestamp"
	"github.com/golang/snappy"
)

// FormatLabels renders labels as Loki's stream selector, names sorted and
// values quoted as Loki's label parser reads them: {a="b", c="d"}.
func FormatLabels(labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(labels[k]))
	}
	b.WriteByte('}')
	return b.String()
}

// truncationMarker is appended to a truncated line, with the number of bytes
// cut, so that a reader sees the line is not whole.
const truncationMarker = " …[truncated %d bytes]"

// sanitizeLine makes line valid UTF-8 and at most maxBytes long, cutting on
// a character boundary and appending the marker. Lines that need nothing are
// returned as they are, without allocating.
func sanitizeLine(line string, maxBytes int) (string, bool) {
	if !utf8.ValidString(line) {
		line = strings.ToValidUTF8(line, "\uFFFD")
	}
	if len(line) <= maxBytes {
		return line, false
	}
	// The marker's length depends on the count it prints; the count is at
	// most len(line), so room for that many digits is enough.
	room := len(" …[truncated  bytes]") + len(strconv.Itoa(len(line)))
	cut := max(maxBytes-room, 0)
	for cut > 0 && !utf8.RuneStart(line[cut]) {
		cut--
	}
	return line[:cut] + " …[truncated " + strconv.Itoa(len(line)-cut) + " bytes]", true
}

// encoder builds snappy-compressed protobuf push bodies, reusing its buffers
// between requests: the client pushes from one goroutine at a time.
type encoder struct {
	mu      sync.Mutex
	order   []int
	entries []logproto.Entry
	ptrs    []*logproto.Entry
	stamps  []timestamp.Timestamp
	bodies  sync.Pool // *[]byte snappy output
}

// encode returns the body for entries, grouped into streams by labelsFor and
// sorted by time within each stream. Give the body back with release.
func (enc *encoder) encode(entries []Entry, labelsFor func(*Entry) string) []byte {
	enc.mu.Lock()
	defer enc.mu.Unlock()
	n := len(entries)
	enc.order = slices.Grow(enc.order[:0], n)[:n]
	enc.entries = slices.Grow(enc.entries[:0], n)[:n]
	enc.ptrs = slices.Grow(enc.ptrs[:0], n)[:n]
	// Timestamps are fresh each time: proto messages must not be copied once used.
	enc.stamps = make([]timestamp.Timestamp, n)

	// Streams are few (a handful of label sets), so a slice beats a map.
	type group struct {
		labels string
		idx    []int
	}
	var groups []group
	labels := make([]string, n)
	for i := range entries {
		labels[i] = labelsFor(&entries[i])
		g := slices.IndexFunc(groups, func(g group) bool { return g.labels == labels[i] })
		if g < 0 {
			groups = append(groups, group{labels: labels[i]})
			g = len(groups) - 1
		}
		groups[g].idx = append(groups[g].idx, i)
	}
	req := &logproto.PushRequest{Streams: make([]*logproto.Stream, 0, len(groups))}
	pos := 0
	for _, g := range groups {
		slices.SortStableFunc(g.idx, func(a, b int) int { return entries[a].Time.Compare(entries[b].Time) })
		stream := &logproto.Stream{Labels: g.labels, Entries: enc.ptrs[pos : pos+len(g.idx) : pos+len(g.idx)]}
		for j, i := range g.idx {
			t := entries[i].Time
			enc.stamps[pos+j].Seconds = t.Unix()
			enc.stamps[pos+j].Nanos = int32(t.Nanosecond())
			enc.entries[pos+j] = logproto.Entry{Timestamp: &enc.stamps[pos+j], Line: entries[i].Line}
			enc.ptrs[pos+j] = &enc.entries[pos+j]
		}
		pos += len(g.idx)
		req.Streams = append(req.Streams, stream)
	}
	raw, err := proto.Marshal(req)
	if err != nil {
		// Marshal fails only on invalid UTF-8, which sanitizeLine removed;
		// an empty body would be refused by Loki and counted there.
		raw = nil
	}
	dst, _ := enc.bodies.Get().(*[]byte)
	if dst == nil {
		dst = new([]byte)
	}
	out := snappy.Encode((*dst)[:cap(*dst)], raw)
	// Drop the references to the lines so they can be collected.
	clear(enc.entries)
	return out
}

// release gives a body back for reuse.
func (enc *encoder) release(body []byte) {
	enc.bodies.Put(&body)
}
