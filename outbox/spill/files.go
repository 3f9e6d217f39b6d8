package spill

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// FileSystem is what the spill asks of the file system to write segments:
// the real one (OS), or in tests one that runs out of room on cue, as a
// /tmp the function fills would.
type FileSystem interface {
	// Create makes a new file for writing; it must not exist.
	Create(path string) (File, error)
	// Free is the space free for the spill's files in dir.
	Free(dir string) (int64, error)
}

// File is a segment being written.
type File interface {
	io.Writer
	Truncate(size int64) error
	Close() error
}

// OS is the operating system's file system.
type OS struct{}

// Create makes path, which must not exist, for writing.
func (OS) Create(path string) (File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
}

// Free is the space free to an unprivileged user in dir's file system.
func (OS) Free(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// Leftovers is what an earlier process left in the spill's directory: it
// was killed (at the SHUTDOWN deadline, or out of memory) with lines
// spilled. Those are read back first, as the oldest lines.
type Leftovers struct {
	// Entries is how many lines were found, to be pushed first.
	Entries int
	// Lost is how many lines were cut short mid-write (one record per
	// segment at most); LostBytes what could not be read back at all,
	// those records and whole segments that could not be read, whose
	// lines cannot be counted. Err says why.
	Lost      int
	LostBytes int64
	Err       error
}

// Leftovers says what Open found of an earlier process's spill; nothing
// for a nil spill (there is none).
func (s *Spill) Leftovers() Leftovers {
	if s == nil {
		return Leftovers{}
	}
	return s.leftovers
}

// baseNumber is the number of the first segment of a spill that found
// none: segments put first (WriteFront) count down from below it.
const baseNumber = 1 << 30

// recover takes up the segments an earlier process left, oldest first.
// A segment that ends inside a record keeps the records before it; one
// that cannot be read at all is removed, its bytes counted as lost.
func (s *Spill) recover() {
	s.back, s.front = baseNumber, baseNumber-1
	dirents, err := os.ReadDir(s.dir)
	if err != nil {
		s.leftovers.Err = fmt.Errorf("spill: listing what an earlier process left: %w", err)
		return
	}
	var found []segment
	for _, d := range dirents {
		if n, off, ok := parseSegmentName(d.Name()); ok && d.Type().IsRegular() {
			found = append(found, segment{n: n, off: off, path: filepath.Join(s.dir, d.Name())})
		}
	}
	slices.SortFunc(found, func(a, b segment) int { return cmp.Compare(a.n, b.n) })
	if len(found) > 0 {
		s.back = max(found[len(found)-1].n+1, baseNumber)
		s.front = min(found[0].n, baseNumber)
		if s.front > 0 { // else no segment can be put first: WriteFront refuses
			s.front--
		}
	}
	lo := &s.leftovers
	for _, seg := range found {
		entries, valid, size, err := scan(seg.path, seg.off)
		if err != nil {
			lo.LostBytes += size - valid
			if errors.Is(err, errCutShort) {
				lo.Lost++
			}
			lo.Err = fmt.Errorf("spill: reading what an earlier process left: %w", err)
		}
		if entries == 0 {
			_ = os.Remove(seg.path)
			continue
		}
		seg.entries, seg.bytes = entries, valid
		s.segments = append(s.segments, seg)
		s.entries += entries
		s.bytes += valid - seg.off
		lo.Entries += entries
	}
}

// scan counts the whole records of a segment file from off: how many, the
// offset their end is at, and the file's size.
func scan(path string, off int64) (entries int, valid, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		if fi, serr := os.Stat(path); serr == nil {
			size = fi.Size()
		}
		return 0, 0, size, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	valid = off
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, off, size, err
	}
	r := bufio.NewReaderSize(f, 64<<10)
	var buf []byte
	var shared *loki.Metadata
	for {
		var n int
		_, n, buf, err = readEntry(r, buf, &shared)
		if err == io.EOF {
			return entries, valid, size, nil
		}
		if err != nil {
			return entries, valid, size, err
		}
		entries++
		valid += int64(n)
	}
}
