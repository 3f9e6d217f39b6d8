package loki

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

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

// A truncated line ends with truncatedPrefix, the number of bytes cut and
// truncatedSuffix, so that a reader sees the line is not whole.
const (
	truncatedPrefix = " …[truncated "
	truncatedSuffix = " bytes]"
)

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
	room := len(truncatedPrefix) + len(truncatedSuffix) + len(strconv.Itoa(len(line)))
	cut := max(maxBytes-room, 0)
	for cut > 0 && !utf8.RuneStart(line[cut]) {
		cut--
	}
	return line[:cut] + truncatedPrefix + strconv.Itoa(len(line)-cut) + truncatedSuffix, true
}

// encoder builds snappy-compressed protobuf push bodies, reusing its buffers
// between requests; the client keeps a pool of them, one per push running
// at once, and each body is a new one.
//
// It writes Loki's PushRequest by hand instead of through the protobuf
// library: the message is three nested repeated fields, the generic
// marshaller spent more time on reflection than on the bytes, needed a
// message struct per line, and pulled about 1.8 MB into the binary. The bytes
// are the same as the marshalling of Loki's own push package (the tests
// compare them byte for byte).
type encoder struct {
	mu     sync.Mutex
	order  []int32 // entry indexes, grouped by stream, each group in time order
	stream []int32 // each entry's group, by entry index
	groups []group
	sizes  []int // encoded size of each entry message, by position in order
	raw    []byte
	packed []byte // snappy's scratch: it needs room for the worst case
}

// group is one stream of a push: its label set and its entries' place in
// encoder.order.
type group struct {
	labels     string
	start, end int
	// entries counts the group's entries while grouping; size is its
	// encoded Stream message's size.
	entries, size int
}

// Protobuf field tags (field number << 3 | wire type) of Loki's push
// messages: PushRequest.streams = 1, Stream.labels = 1, Stream.entries = 2,
// Entry.timestamp = 1, Entry.line = 2, Entry.structuredMetadata = 3,
// LabelPair.name = 1, LabelPair.value = 2, Timestamp.seconds = 1 and
// Timestamp.nanos = 2.
const (
	tagStreams   = 1<<3 | 2
	tagLabels    = 1<<3 | 2
	tagEntries   = 2<<3 | 2
	tagTimestamp = 1<<3 | 2
	tagLine      = 2<<3 | 2
	tagMetadata  = 3<<3 | 2
	tagPairName  = 1<<3 | 2
	tagPairValue = 2<<3 | 2
	tagSeconds   = 1<<3 | 0
	tagNanos     = 2<<3 | 0
)

// metaFields selects which of an entry's fields are sent as structured
// metadata; the zero value sends none, for a Loki that refuses it.
type metaFields uint8

const (
	metaLevel metaFields = 1 << iota
	metaRequestID
	metaTraceID
	// metaShared is the entry's Meta: the sandbox's and the invocation's
	// context, a REPORT's figures.
	metaShared

	metaAll = metaLevel | metaRequestID | metaTraceID | metaShared
)

// Structured metadata names. They are written in this (sorted) order, the
// order Loki keeps a label set in.
const (
	nameLevel     = "level"
	nameRequestID = "request_id"
	nameTraceID   = "trace_id"
)

// sendsLevel reports whether the entry's level goes in its metadata.
func sendsLevel(e *Entry, meta metaFields) bool {
	return meta&metaLevel != 0 && e.Level != "" && len(e.Level) <= MaxLevelBytes
}

// encode returns the body for entries, grouped into streams by labelsFor and
// sorted by time within each stream, with the structured metadata meta
// selects.
func (enc *encoder) encode(entries []Entry, labelsFor func(*Entry) string, meta metaFields) []byte {
	enc.mu.Lock()
	defer enc.mu.Unlock()
	enc.group(entries, labelsFor)

	// Protobuf prefixes every message with its length, so sizes go first.
	n := len(entries)
	enc.sizes = slices.Grow(enc.sizes[:0], n)[:n]
	total := 0
	for gi := range enc.groups {
		g := &enc.groups[gi]
		size := fieldSize(len(g.labels))
		for pos := g.start; pos < g.end; pos++ {
			e := &entries[enc.order[pos]]
			enc.sizes[pos] = entrySize(e, meta)
			size += fieldSize(enc.sizes[pos])
		}
		g.size = size
		total += fieldSize(size)
	}

	raw := slices.Grow(enc.raw[:0], total)
	for _, g := range enc.groups {
		raw = append(raw, tagStreams)
		raw = binary.AppendUvarint(raw, uint64(g.size))
		raw = appendString(raw, tagLabels, g.labels)
		for pos := g.start; pos < g.end; pos++ {
			e := &entries[enc.order[pos]]
			raw = append(raw, tagEntries)
			raw = binary.AppendUvarint(raw, uint64(enc.sizes[pos]))
			secs, nanos := e.Time.Unix(), e.Time.Nanosecond()
			raw = append(raw, tagTimestamp)
			raw = binary.AppendUvarint(raw, uint64(timestampSize(secs, nanos)))
			if secs != 0 {
				raw = append(raw, tagSeconds)
				raw = binary.AppendUvarint(raw, uint64(secs))
			}
			if nanos != 0 {
				raw = append(raw, tagNanos)
				raw = binary.AppendUvarint(raw, uint64(nanos))
			}
			raw = appendString(raw, tagLine, e.Line)
			if meta != 0 {
				raw = appendMetadata(raw, e, meta)
			}
		}
	}
	enc.raw = raw

	// The compressed body is not pooled: an HTTP/2 transport may still be
	// reading it after Do has returned an early answer (a 401 or 413 from a
	// gateway), so it must not be reused for the next push. Snappy wants
	// room for the worst case, several times what log lines compress to:
	// that room is kept, and the body copied out at its own size, so that
	// no push allocates (and zeroes) a buffer it mostly leaves unused.
	if n := snappy.MaxEncodedLen(len(raw)); cap(enc.packed) < n {
		enc.packed = make([]byte, n)
	}
	return bytes.Clone(snappy.Encode(enc.packed[:cap(enc.packed)], raw))
}

// group fills enc.groups and enc.order: entries by stream, in the order the
// streams first appear, each stream sorted by time (stable, so lines with
// the same timestamp keep the order they were written in).
func (enc *encoder) group(entries []Entry, labelsFor func(*Entry) string) {
	n := len(entries)
	enc.groups = enc.groups[:0]
	enc.order = slices.Grow(enc.order[:0], n)[:n]
	// Streams are few (a handful of label sets) and consecutive entries
	// nearly always share one, so remember the last stream found.
	enc.stream = slices.Grow(enc.stream[:0], n)[:n]
	last := -1
	for i := range entries {
		labels := labelsFor(&entries[i])
		if last < 0 || enc.groups[last].labels != labels {
			last = slices.IndexFunc(enc.groups, func(g group) bool { return g.labels == labels })
			if last < 0 {
				enc.groups = append(enc.groups, group{labels: labels})
				last = len(enc.groups) - 1
			}
		}
		enc.stream[i] = int32(last)
		enc.groups[last].entries++
	}
	pos := 0
	for gi := range enc.groups {
		g := &enc.groups[gi]
		g.start, g.end = pos, pos
		pos += g.entries
	}
	for i, s := range enc.stream {
		g := &enc.groups[s]
		enc.order[g.end] = int32(i)
		g.end++
	}
	byTime := func(a, b int32) int { return entries[a].Time.Compare(entries[b].Time) }
	for _, g := range enc.groups {
		// Lambda delivers lines in order; sorting is for the rare batch that
		// is not, and checking first is a single pass.
		if idx := enc.order[g.start:g.end]; !slices.IsSortedFunc(idx, byTime) {
			slices.SortStableFunc(idx, byTime)
		}
	}
}

// entrySize is the encoded size of an Entry message: its timestamp (always
// present), its line (omitted when empty, as proto3 does) and its structured
// metadata.
func entrySize(e *Entry, meta metaFields) int {
	size := fieldSize(timestampSize(e.Time.Unix(), e.Time.Nanosecond()))
	if e.Line != "" {
		size += fieldSize(len(e.Line))
	}
	if meta != 0 {
		size += metadataSize(e, meta)
	}
	return size
}

// metadataSize is the encoded size of an entry's structured metadata: one
// repeated field per non-empty value that meta selects.
func metadataSize(e *Entry, meta metaFields) int {
	size := 0
	if sendsLevel(e, meta) {
		size += fieldSize(pairSize(nameLevel, e.Level))
	}
	if meta&metaRequestID != 0 && e.RequestID != "" {
		size += fieldSize(pairSize(nameRequestID, e.RequestID))
	}
	if meta&metaTraceID != 0 && e.TraceID != "" {
		size += fieldSize(pairSize(nameTraceID, e.TraceID))
	}
	if meta&metaShared != 0 && e.Meta != nil {
		size += len(e.Meta.encoded)
	}
	return size
}

// appendMetadata appends the entry's structured metadata, in the order of
// metadataSize. An empty value is left out: it would say nothing and cost
// bytes on every line.
func appendMetadata(b []byte, e *Entry, meta metaFields) []byte {
	if sendsLevel(e, meta) {
		b = appendPair(b, nameLevel, e.Level)
	}
	if meta&metaRequestID != 0 && e.RequestID != "" {
		b = appendPair(b, nameRequestID, e.RequestID)
	}
	if meta&metaTraceID != 0 && e.TraceID != "" {
		b = appendPair(b, nameTraceID, e.TraceID)
	}
	if meta&metaShared != 0 && e.Meta != nil {
		// Encoded once for every entry that shares it: a copy per line.
		b = append(b, e.Meta.encoded...)
	}
	return b
}

// pairSize is the encoded size of a LabelPair message; name and value are
// never empty here.
func pairSize(name, value string) int { return fieldSize(len(name)) + fieldSize(len(value)) }

func appendPair(b []byte, name, value string) []byte {
	b = append(b, tagMetadata)
	b = binary.AppendUvarint(b, uint64(pairSize(name, value)))
	b = appendString(b, tagPairName, name)
	return appendString(b, tagPairValue, value)
}

// timestampSize is the encoded size of a Timestamp message; zero fields are
// omitted, as proto3 does.
func timestampSize(secs int64, nanos int) int {
	size := 0
	if secs != 0 {
		size += 1 + uvarintSize(uint64(secs))
	}
	if nanos != 0 {
		size += 1 + uvarintSize(uint64(nanos))
	}
	return size
}

// fieldSize is the size of a length-delimited field of n bytes with a
// one-byte tag.
func fieldSize(n int) int { return 1 + uvarintSize(uint64(n)) + n }

func uvarintSize(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// appendString appends a string field, or nothing for "" as proto3 does.
func appendString(b []byte, tag byte, s string) []byte {
	if s == "" {
		return b
	}
	b = append(b, tag)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}
