package spill

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// Segment files are named segment-<n>.spill, n a decimal number: segments
// are read back in the order of n. One read back in part is renamed
// segment-<n>.<offset>.spill, offset the bytes read: the lines before it
// are the process's now, and one started after a kill must not read them
// again. Only files with such names, in the spill's own subdirectory, are
// ever read or removed.
const (
	segmentPrefix = "segment-"
	segmentSuffix = ".spill"
)

func segmentName(n uint64, off int64) string {
	name := segmentPrefix + strconv.FormatUint(n, 10)
	if off > 0 {
		name += "." + strconv.FormatInt(off, 10)
	}
	return name + segmentSuffix
}

// parseSegmentName returns the number and offset of a segment file's
// name; false for any other name, which the spill leaves alone.
func parseSegmentName(name string) (n uint64, off int64, ok bool) {
	rest, ok := strings.CutPrefix(name, segmentPrefix)
	if !ok {
		return 0, 0, false
	}
	if rest, ok = strings.CutSuffix(rest, segmentSuffix); !ok {
		return 0, 0, false
	}
	num, offset, hasOffset := strings.Cut(rest, ".")
	if !digits(num) || hasOffset && !digits(offset) {
		return 0, 0, false
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	if hasOffset {
		if off, err = strconv.ParseInt(offset, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return n, off, true
}

func digits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// A record is its length, then the entry's time (Unix nanoseconds), stream,
// and its strings, each length-prefixed: level, request ID, trace ID, line,
// and the shared metadata as encoded for a push (a record without the last
// has none).

func appendEntry(b []byte, e *loki.Entry) []byte {
	var tmp [binary.MaxVarintLen64]byte
	nanos := e.Time.UnixNano()
	fields := [5]string{e.Level, e.RequestID, e.TraceID, e.Line, e.Meta.Encoded()}
	size := len(binary.AppendVarint(tmp[:0], nanos)) + 1
	for _, f := range fields {
		size += len(binary.AppendUvarint(tmp[:0], uint64(len(f)))) + len(f)
	}
	b = binary.AppendUvarint(b, uint64(size))
	b = binary.AppendVarint(b, nanos)
	b = append(b, byte(e.Stream))
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// errCutShort says a segment ends inside a record: its writer was stopped
// mid-write (killed, or the disk refused the rest).
var errCutShort = errors.New("a segment was cut short")

// maxRecord bounds a record's length as read back, so that a corrupt
// length cannot make the reader allocate gigabytes: a line is at most a
// telemetry batch's size (1 MiB) and its IDs are short.
const maxRecord = 64 << 20

// readEntry reads one record; n is its size on disk. At the end of r it
// returns io.EOF; inside a record, errCutShort. Entries that shared
// metadata when written share it again: shared holds the last one read,
// reused while the next record's is the same.
func readEntry(r *bufio.Reader, buf []byte, shared **loki.Metadata) (e loki.Entry, n int, _ []byte, err error) {
	size, err := binary.ReadUvarint(r)
	switch {
	case err == io.EOF:
		return e, 0, buf, io.EOF
	case err != nil:
		return e, 0, buf, errCutShort
	case size > maxRecord:
		return e, 0, buf, fmt.Errorf("a record claims %d bytes: the segment is corrupt", size)
	}
	if cap(buf) < int(size) {
		buf = make([]byte, size)
	}
	body := buf[:size]
	if _, err := io.ReadFull(r, body); err != nil {
		return e, 0, buf, errCutShort
	}
	e, ok := decodeBody(body, shared)
	if !ok {
		return e, 0, buf, errors.New("a record does not decode: the segment is corrupt")
	}
	var tmp [binary.MaxVarintLen64]byte
	return e, len(binary.AppendUvarint(tmp[:0], size)) + int(size), buf, nil
}

func decodeBody(body []byte, shared **loki.Metadata) (e loki.Entry, ok bool) {
	nanos, k := binary.Varint(body)
	if k <= 0 || len(body) < k+1 {
		return e, false
	}
	e.Time = time.Unix(0, nanos)
	e.Stream = loki.StreamType(body[k])
	body = body[k+1:]
	var fields [5][]byte
	for i := range fields {
		if i == 4 && len(body) == 0 {
			break // no metadata field
		}
		l, k := binary.Uvarint(body)
		if k <= 0 || uint64(len(body)-k) < l {
			return e, false
		}
		fields[i] = body[k : k+int(l)]
		body = body[k+int(l):]
	}
	e.Level, e.RequestID, e.TraceID, e.Line = string(fields[0]), string(fields[1]), string(fields[2]), string(fields[3])
	if meta := fields[4]; len(meta) > 0 {
		if *shared == nil || (*shared).Encoded() != string(meta) {
			// Metadata that does not read back costs the line its
			// context, not the line.
			m, _ := loki.ParseMetadata(string(meta))
			*shared = m
		}
		e.Meta = *shared
	}
	return e, len(body) == 0
}
