// Package spill keeps log entries in files while they cannot be held in
// memory: the extension's queue moves its oldest entries here when it
// reaches its memory bound while Loki is away, and takes them back, oldest
// first, once Loki takes lines again.
//
// A spill is a directory of segment files, each written once, in order,
// and read back and deleted: no file is ever rewritten, so a crash leaves
// at worst a partial last record, which reading skips. The directory is
// the spill's own (Subdir, inside the directory it is given), and only
// files named as its segments are ever read or removed there: whatever
// else the function keeps nearby is never touched.
package spill

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// SegmentBytes is the size at which a segment is closed and a new one
// begun: about one push request.
const SegmentBytes = 1 << 20

// Subdir is the name of the spill's own directory, made inside
// Config.Dir.
const Subdir = "grafana-loki-extension-spill"

// defaultRoomRecheck is Config.RoomRecheck's default.
const defaultRoomRecheck = time.Second

// ErrFull says the spill has reached its bound (its own, or its share of
// the free space); the entries were not written.
var ErrFull = errors.New("the spill file is full")

// Config says where a spill lives and how large it may grow.
type Config struct {
	// Dir is the directory the spill makes its own subdirectory (Subdir)
	// in; nothing else in it is touched.
	Dir string
	// MaxBytes bounds the spill's files.
	MaxBytes int64
	// FreeShare is the largest fraction of the file system's free space
	// the spill may take, checked at every new segment (default 0.25): the
	// function uses the same /tmp.
	FreeShare float64
	// Files is the file system segments are written to (nil: OS).
	Files FileSystem
	// RoomRecheck is how long the spill stays full after the file system
	// had no room, before it looks again (default one second): the
	// function may free /tmp at any time, and looking at every Put would
	// cost a system call each.
	RoomRecheck time.Duration
}

// Spill is a FIFO of entries on disk. It is not safe for concurrent use;
// the queue calls it under its own lock.
type Spill struct {
	cfg      Config
	dir      string
	segments []segment // oldest first; the last may be open for writing
	w        File      // the last segment's, while it is written
	// back and front number the next segment appended, and the next put
	// before all others (WriteFront).
	back, front uint64
	entries     int
	bytes       int64
	buf, rbuf   []byte
	// noRoomUntil: the file system had no room (a new segment would pass
	// the free-space share, or it refused a write); Full until then.
	noRoomUntil time.Time
	noRoomErr   error // why: ErrFull, or the disk's error
	leftovers   Leftovers
}

type segment struct {
	n       uint64
	path    string
	entries int   // not yet read back
	bytes   int64 // whole records in the file
	off     int64 // read back so far
}

// Open prepares the spill in its own subdirectory of cfg.Dir. Segments an
// earlier process left there (it was killed before it could push them)
// are kept, to be read back first: Leftovers says what they hold. It fails
// when the directory cannot be written.
func Open(cfg Config) (*Spill, error) {
	if cfg.Files == nil {
		cfg.Files = OS{}
	}
	if cfg.RoomRecheck <= 0 {
		cfg.RoomRecheck = defaultRoomRecheck
	}
	if cfg.FreeShare <= 0 || cfg.FreeShare > 1 {
		cfg.FreeShare = 0.25
	}
	if !filepath.IsAbs(cfg.Dir) {
		return nil, errors.New("spill: the directory must be an absolute path")
	}
	dir := filepath.Join(cfg.Dir, Subdir)
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("spill: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("spill: %w", err)
	}
	// Not a link the function made to somewhere else: a directory.
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("spill: %s is not a directory of its own", dir)
	}
	probe := filepath.Join(dir, ".write-probe")
	if err := os.WriteFile(probe, []byte("x"), 0o600); err != nil {
		return nil, fmt.Errorf("spill: %s is not writable: %w", dir, err)
	}
	_ = os.Remove(probe)
	s := &Spill{cfg: cfg, dir: dir}
	s.recover()
	return s, nil
}

// Len is the number of entries spilled.
func (s *Spill) Len() int { return s.entries }

// Bytes is the size of the spill's files not yet read back.
func (s *Spill) Bytes() int64 { return s.bytes }

// Full reports whether the spill has no room for another segment: Write
// would refuse anything that does not fit in the current one.
func (s *Spill) Full() bool {
	return s.bytes >= s.cfg.MaxBytes || time.Now().Before(s.noRoomUntil)
}

// FullErr says why the spill is Full: ErrFull when it reached its bound or
// its share of the free space, the disk's error (ENOSPC) when the disk
// refused its last write.
func (s *Spill) FullErr() error {
	if s.bytes < s.cfg.MaxBytes && s.noRoomErr != nil && time.Now().Before(s.noRoomUntil) {
		return s.noRoomErr
	}
	return ErrFull
}

// Write appends entries, all or none: ErrFull when they would take the
// spill past its bound, another error when the disk refused them (then
// nothing of them is in the spill, and the next Write begins a new
// segment).
func (s *Spill) Write(entries []loki.Entry) error {
	size, err := s.encode(entries)
	if err != nil {
		return err
	}
	last := len(s.segments) - 1
	if s.w == nil || s.segments[last].bytes+size > SegmentBytes && s.segments[last].bytes > 0 {
		if err := s.closeWriter(); err != nil {
			return err
		}
		f, path, err := s.create(s.back, size)
		if err != nil {
			return err
		}
		s.segments = append(s.segments, segment{n: s.back, path: path})
		s.back++
		s.w = f
		last = len(s.segments) - 1
	}
	seg := &s.segments[last]
	if _, err := s.w.Write(s.buf); err != nil {
		s.refused(err)
		// Whatever part reached the file is cut off, so that it ends on
		// its last whole record; if that fails, reading stops there anyway
		// (seg.bytes). The segment is closed: the next write begins anew.
		_ = s.w.Truncate(seg.bytes)
		_ = s.w.Close()
		s.w = nil
		if seg.entries == 0 {
			_ = os.Remove(seg.path)
			s.segments = s.segments[:last]
		}
		return fmt.Errorf("spill: writing a segment: %w", err)
	}
	seg.entries += len(entries)
	seg.bytes += size
	s.entries += len(entries)
	s.bytes += size
	return nil
}

// WriteFront puts entries before everything spilled, all or none, in a
// segment of their own: they are older than what the spill holds (they
// came out of it, and a push failed). Errors as Write's.
func (s *Spill) WriteFront(entries []loki.Entry) error {
	size, err := s.encode(entries)
	if err != nil {
		return err
	}
	if s.front == 0 {
		return ErrFull // a billion segments put first: never in practice
	}
	f, path, err := s.create(s.front, size)
	if err != nil {
		return err
	}
	n := s.front
	s.front--
	_, err = f.Write(s.buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.refused(err)
		_ = os.Remove(path)
		return fmt.Errorf("spill: writing a segment: %w", err)
	}
	s.segments = slices.Insert(s.segments, 0, segment{n: n, path: path, entries: len(entries), bytes: size})
	s.entries += len(entries)
	s.bytes += size
	return nil
}

// encode checks the bound and encodes entries into s.buf.
func (s *Spill) encode(entries []loki.Entry) (int64, error) {
	if s.Full() {
		return 0, s.FullErr()
	}
	s.buf = s.buf[:0]
	for i := range entries {
		s.buf = appendEntry(s.buf, &entries[i])
	}
	size := int64(len(s.buf))
	if s.bytes+size > s.cfg.MaxBytes {
		return 0, ErrFull
	}
	return size, nil
}

// create makes segment file n, if the file system has room for it within
// the spill's share of the free space.
func (s *Spill) create(n uint64, need int64) (File, string, error) {
	if free, err := s.cfg.Files.Free(s.dir); err == nil {
		// The share is of the space the spill could have: what is free now
		// plus what it already holds.
		if float64(s.bytes+max(need, SegmentBytes)) > s.cfg.FreeShare*float64(free+s.bytes) {
			s.noRoomUntil, s.noRoomErr = time.Now().Add(s.cfg.RoomRecheck), ErrFull
			return nil, "", ErrFull
		}
	}
	path := filepath.Join(s.dir, segmentName(n, 0))
	f, err := s.cfg.Files.Create(path)
	if err != nil {
		s.refused(err)
		return nil, "", fmt.Errorf("spill: %w", err)
	}
	return f, path, nil
}

// refused notes a write the disk refused: when for want of room, the spill
// is full for a while rather than failing at every Put.
func (s *Spill) refused(err error) {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		s.noRoomUntil, s.noRoomErr = time.Now().Add(s.cfg.RoomRecheck), fmt.Errorf("spill: the disk has no room: %w", err)
	}
}

func (s *Spill) closeWriter() error {
	if s.w == nil {
		return nil
	}
	err := s.w.Close()
	s.w = nil
	if err != nil {
		return fmt.Errorf("spill: closing a segment: %w", err)
	}
	return nil
}

// ReadOldest removes and returns the oldest entries, oldest first, up to
// maxEntries and as many as fit in maxBytes (as Entry.Size counts them),
// but at least one; nil when the spill is empty. Entries of a segment that
// cannot be read back are counted in lost, and the error says why; the
// entries before them in it are returned.
func (s *Spill) ReadOldest(maxEntries, maxBytes int) (entries []loki.Entry, lost int, err error) {
	if len(s.segments) == 0 {
		return nil, 0, nil
	}
	seg := &s.segments[0]
	entries, read, err := s.readSegment(seg, max(maxEntries, 1), maxBytes)
	seg.entries -= len(entries)
	seg.off += read
	s.entries -= len(entries)
	s.bytes -= read
	s.noRoomUntil = time.Time{} // room was made
	if err != nil {
		lost = seg.entries
		s.entries -= seg.entries
		s.bytes -= seg.bytes - seg.off
		seg.entries = 0
		err = fmt.Errorf("spill: reading a segment back: %w", err)
	}
	if seg.entries == 0 {
		if len(s.segments) == 1 {
			_ = s.closeWriter()
		}
		_ = os.Remove(seg.path)
		s.segments = slices.Delete(s.segments, 0, 1)
		return entries, lost, err
	}
	// The name says how far it was read: a process started after a kill
	// must not push these lines again. (Where the rename fails, it would.)
	path := filepath.Join(s.dir, segmentName(seg.n, seg.off))
	if os.Rename(seg.path, path) == nil {
		seg.path = path
	}
	return entries, lost, err
}

// readSegment reads whole records of seg from where the last read ended.
func (s *Spill) readSegment(seg *segment, maxEntries, maxBytes int) (entries []loki.Entry, read int64, err error) {
	f, err := os.Open(seg.path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	if _, err := f.Seek(seg.off, io.SeekStart); err != nil {
		return nil, 0, err
	}
	r := bufio.NewReaderSize(io.LimitReader(f, seg.bytes-seg.off), 64<<10)
	size := 0
	var shared *loki.Metadata // the last entry's, which the next usually shares
	for len(entries) < min(maxEntries, seg.entries) && (len(entries) == 0 || size < maxBytes) {
		var e loki.Entry
		var n int
		e, n, s.rbuf, err = readEntry(r, s.rbuf, &shared)
		if err == io.EOF {
			err = errCutShort // the file holds fewer records than were written
		}
		if err != nil {
			return entries, read, err
		}
		if len(entries) > 0 && size+e.Size() > maxBytes {
			break
		}
		entries = append(entries, e)
		size += e.Size()
		read += int64(n)
	}
	return entries, read, nil
}

// Close removes the spill's files, and its directory when nothing else is
// in it; what they held is gone.
func (s *Spill) Close() error {
	_ = s.closeWriter()
	var err error
	for _, seg := range s.segments {
		if rerr := os.Remove(seg.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = rerr
		}
	}
	s.segments, s.entries, s.bytes = nil, 0, 0
	_ = os.Remove(s.dir) // fails, as it should, when the directory is not empty
	return err
}
