// Package spill keeps log entries in files while they cannot be held in
// memory: the extension's queue moves its oldest entries here when it
// reaches its memory bound while Loki is away, and takes them back, oldest
// first, once Loki takes lines again.
//
// A spill is a directory of segment files, each written once, in order,
// and read back whole and deleted: no file is ever rewritten, so a crash
// leaves at worst a partial last record, which reading skips.
package spill

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// SegmentBytes is the size at which a segment is closed and a new one
// begun: about one push request, so that reading one back holds no more
// than the dispatcher takes at a time.
const SegmentBytes = 1 << 20

// ErrFull says the spill has reached its bound (its own, or its share of
// the free space); the entries were not written.
var ErrFull = errors.New("the spill file is full")

// Config says where a spill lives and how large it may grow.
type Config struct {
	// Dir is the spill's own directory; whatever an earlier process left
	// there is removed.
	Dir string
	// MaxBytes bounds the spill's files.
	MaxBytes int64
	// FreeShare is the largest fraction of the file system's free space
	// the spill may take, checked at every new segment (default 0.25): the
	// function uses the same /tmp.
	FreeShare float64
}

// Spill is a FIFO of entries on disk. It is not safe for concurrent use;
// the queue calls it under its own lock.
type Spill struct {
	cfg      Config
	segments []segment // oldest first; the last may be open for writing
	w        *os.File
	bw       *bufio.Writer
	next     int // number of the next segment file
	entries  int
	bytes    int64
	buf      []byte
	// full is set when a segment found no room in the spill's share of the
	// free space, and cleared when a segment is read back.
	full bool
}

type segment struct {
	path    string
	entries int
	bytes   int64
}

// Open prepares an empty spill in cfg.Dir, removing files an earlier
// process left there (a process killed at SHUTDOWN counted them as lost).
// It fails when the directory cannot be written.
func Open(cfg Config) (*Spill, error) {
	if cfg.FreeShare <= 0 || cfg.FreeShare > 1 {
		cfg.FreeShare = 0.25
	}
	if err := os.RemoveAll(cfg.Dir); err != nil {
		return nil, fmt.Errorf("spill: clearing %s: %w", cfg.Dir, err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spill: %w", err)
	}
	probe := filepath.Join(cfg.Dir, "probe")
	if err := os.WriteFile(probe, []byte("x"), 0o600); err != nil {
		return nil, fmt.Errorf("spill: %s is not writable: %w", cfg.Dir, err)
	}
	_ = os.Remove(probe)
	return &Spill{cfg: cfg}, nil
}

// Len is the number of entries spilled.
func (s *Spill) Len() int { return s.entries }

// Bytes is the size of the spill's files.
func (s *Spill) Bytes() int64 { return s.bytes }

// Full reports whether the spill has no room for another segment: Write
// would refuse anything that does not fit in the current one.
func (s *Spill) Full() bool { return s.full || s.bytes >= s.cfg.MaxBytes }

// Write appends entries, all or none: ErrFull when they would take the
// spill past its bound, another error when the disk refused them.
func (s *Spill) Write(entries []loki.Entry) error {
	if s.Full() {
		return ErrFull
	}
	s.buf = s.buf[:0]
	for i := range entries {
		s.buf = appendEntry(s.buf, &entries[i])
	}
	size := int64(len(s.buf))
	if s.bytes+size > s.cfg.MaxBytes {
		return ErrFull
	}
	if s.w == nil || s.segments[len(s.segments)-1].bytes+size > SegmentBytes && s.segments[len(s.segments)-1].entries > 0 {
		if err := s.startSegment(size); err != nil {
			return err
		}
	}
	if _, err := s.bw.Write(s.buf); err != nil {
		return fmt.Errorf("spill: writing: %w", err)
	}
	seg := &s.segments[len(s.segments)-1]
	seg.entries += len(entries)
	seg.bytes += size
	s.entries += len(entries)
	s.bytes += size
	return nil
}

// startSegment closes the segment being written and begins a new one, if
// the file system has room for it within the spill's share.
func (s *Spill) startSegment(need int64) error {
	if err := s.closeWriter(); err != nil {
		return err
	}
	if free, err := freeBytes(s.cfg.Dir); err == nil {
		// The share is of the space the spill could have: what is free now
		// plus what it already holds.
		if float64(s.bytes+max(need, SegmentBytes)) > s.cfg.FreeShare*float64(free+s.bytes) {
			s.full = true
			return ErrFull
		}
	}
	path := filepath.Join(s.cfg.Dir, "segment-"+strconv.Itoa(s.next))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("spill: %w", err)
	}
	s.next++
	s.w, s.bw = f, bufio.NewWriterSize(f, 64*1024)
	s.segments = append(s.segments, segment{path: path})
	return nil
}

func (s *Spill) closeWriter() error {
	if s.w == nil {
		return nil
	}
	err := s.bw.Flush()
	if cerr := s.w.Close(); err == nil {
		err = cerr
	}
	s.w, s.bw = nil, nil
	if err != nil {
		return fmt.Errorf("spill: closing a segment: %w", err)
	}
	return nil
}

// ReadOldest removes the oldest segment and returns its entries, oldest
// first; nil when the spill is empty. Entries of a segment that cannot be
// read back are counted in lost, and the error says why.
func (s *Spill) ReadOldest() (entries []loki.Entry, lost int, err error) {
	if len(s.segments) == 0 {
		return nil, 0, nil
	}
	if len(s.segments) == 1 {
		if err := s.closeWriter(); err != nil {
			return nil, 0, err
		}
	}
	seg := s.segments[0]
	s.segments = slices.Delete(s.segments, 0, 1)
	s.full = false
	s.entries -= seg.entries
	s.bytes -= seg.bytes
	defer os.Remove(seg.path)
	data, err := os.ReadFile(seg.path)
	if err != nil {
		return nil, seg.entries, fmt.Errorf("spill: reading a segment back: %w", err)
	}
	entries = make([]loki.Entry, 0, seg.entries)
	var shared *loki.Metadata // the last entry's, which the next usually shares
	for len(data) > 0 {
		e, n, ok := decodeEntry(data, &shared)
		if !ok {
			return entries, seg.entries - len(entries), errors.New("spill: a segment was cut short")
		}
		entries = append(entries, e)
		data = data[n:]
	}
	return entries, 0, nil
}

// Close removes the spill's files; what they held is gone.
func (s *Spill) Close() error {
	_ = s.closeWriter()
	s.segments, s.entries, s.bytes = nil, 0, 0
	return os.RemoveAll(s.cfg.Dir)
}

func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// A record is its length, then the entry's time (Unix nanoseconds), stream,
// and its strings, each length-prefixed: level, request ID, trace ID, line,
// shared metadata as encoded for a push.

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

// decodeEntry reads one record. Entries that shared metadata when written
// share it again: shared holds the last one read, reused while the next
// record's is the same.
func decodeEntry(data []byte, shared **loki.Metadata) (e loki.Entry, n int, ok bool) {
	size, k := binary.Uvarint(data)
	if k <= 0 || uint64(len(data)-k) < size {
		return e, 0, false
	}
	body := data[k : k+int(size)]
	n = k + int(size)
	nanos, k := binary.Varint(body)
	if k <= 0 || len(body) < k+1 {
		return e, 0, false
	}
	e.Time = time.Unix(0, nanos)
	e.Stream = loki.StreamType(body[k])
	body = body[k+1:]
	var fields [5][]byte
	for i := range fields {
		l, k := binary.Uvarint(body)
		if k <= 0 || uint64(len(body)-k) < l {
			return e, 0, false
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
	return e, n, true
}
