package spill

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// The spill works in its own subdirectory and removes only its own
// segment files: given /tmp itself (or any directory the function uses),
// the function's files there, even one named like a segment, survive the
// spill's start, its use and its end.
func TestTheSpillTouchesOnlyItsOwnFiles(t *testing.T) {
	dir := t.TempDir()
	functionFiles := []string{"model.bin", "segment-0", "cache/segment-1.spill", Subdir + "-notes.txt"}
	for _, f := range functionFiles {
		path := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("the function's"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A file of the function's in the spill's own directory is not its
	// either, unless it is named as a segment.
	own := filepath.Join(dir, Subdir)
	if err := os.Mkdir(own, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(own, "readme"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Config{Dir: dir, MaxBytes: 64 << 20, FreeShare: 1})
	if err != nil {
		t.Fatal(err)
	}
	for b := range 15 {
		if err := s.Write(entries("b"+string(rune('a'+b)), 100, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.ReadOldest(10, 1<<30); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range append(functionFiles, Subdir+"/readme") {
		if data, err := os.ReadFile(filepath.Join(dir, f)); err != nil || len(data) == 0 {
			t.Errorf("the function's %s is gone: %v", f, err)
		}
	}
	if names := segmentFiles(t, own); len(names) != 0 {
		t.Errorf("segments left after Close: %v", names)
	}
}

// A symbolic link in place of the spill's directory is not followed: the
// spill would write, and remove, where the link points.
func TestTheSpillRefusesALinkForItsDirectory(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(dir, Subdir)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Dir: dir, MaxBytes: 64 << 20}); err == nil {
		t.Fatal("opened a spill through a symbolic link")
	}
}

// A process killed with lines spilled (at the SHUTDOWN deadline, out of
// memory) leaves its segments: the next process in the same /tmp reads
// them back first, before its own lines, and counts the record a kill cut
// short, and a segment it cannot read, as lost.
func TestLeftoversOfAKilledProcessComeBackFirst(t *testing.T) {
	dir := t.TempDir()
	first, err := Open(Config{Dir: dir, MaxBytes: 64 << 20, FreeShare: 1})
	if err != nil {
		t.Fatal(err)
	}
	var want []loki.Entry
	for b := range 15 { // two segments and a bit
		batch := entries("old"+string(rune('a'+b)), 100, 1000)
		want = append(want, batch...)
		if err := first.Write(batch); err != nil {
			t.Fatal(err)
		}
	}
	// Killed: no Close. The kill also cut the last write short.
	last := first.segments[len(first.segments)-1].path
	f, err := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	partial := appendEntry(nil, &loki.Entry{Line: "cut short"})
	if _, err := f.Write(partial[:len(partial)-2]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// And a segment whose first record is garbage cannot be read at all.
	if err := os.WriteFile(filepath.Join(dir, Subdir, segmentName(first.back+5, 0)), []byte{0xff, 0xff, 0xff, 0xff, 0x7f, 1, 2}, 0o600); err != nil {
		t.Fatal(err)
	}

	second, err := Open(Config{Dir: dir, MaxBytes: 64 << 20, FreeShare: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	lo := second.Leftovers()
	if lo.Entries != len(want) || lo.Lost != 1 || lo.LostBytes != int64(len(partial)-2+7) || lo.Err == nil || second.Len() != len(want) {
		t.Fatalf("leftovers %+v, len %d; want %d entries, 1 lost", lo, second.Len(), len(want))
	}
	newer := entries("new", 5, 10)
	if err := second.Write(newer); err != nil {
		t.Fatal(err)
	}
	want = append(want, newer...)
	var got []string
	for second.Len() > 0 {
		seg, lost, err := second.ReadOldest(333, 1<<30)
		if err != nil || lost != 0 {
			t.Fatal(lost, err)
		}
		for _, e := range seg {
			got = append(got, e.Line)
		}
	}
	if !slices.Equal(got, lines(want)) {
		t.Fatalf("read back %d lines, want %d, oldest first", len(got), len(want))
	}
}

// Reading back is bounded: no more than asked, in entries and in bytes as
// the queue counts them, the rest of the segment left for the next read.
func TestReadOldestTakesNoMoreThanAsked(t *testing.T) {
	s := openSpill(t, 64<<20)
	batch := entries("a", 1000, 100)
	if err := s.Write(batch); err != nil {
		t.Fatal(err)
	}
	one := batch[0].Size()
	var got []loki.Entry
	for s.Len() > 0 {
		part, lost, err := s.ReadOldest(300, 50*one)
		if err != nil || lost != 0 || len(part) > 50 {
			t.Fatalf("read %d, lost %d: %v", len(part), lost, err)
		}
		got = append(got, part...)
	}
	if !slices.Equal(lines(got), lines(batch)) || s.Bytes() != 0 {
		t.Fatalf("read back %d of %d, %d bytes left", len(got), len(batch), s.Bytes())
	}
	if names := segmentFiles(t, s.dir); len(names) != 0 {
		t.Fatalf("segments left: %v", names)
	}
}

// What is put first comes back first, before everything spilled.
func TestWriteFrontGoesBeforeEverything(t *testing.T) {
	s := openSpill(t, 64<<20)
	later := entries("later", 50, 10)
	if err := s.Write(later); err != nil {
		t.Fatal(err)
	}
	head, _, _ := s.ReadOldest(20, 1<<30)
	if err := s.WriteFront(head); err != nil {
		t.Fatal(err)
	}
	var got []loki.Entry
	for s.Len() > 0 {
		part, _, err := s.ReadOldest(7, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, part...)
	}
	if !slices.Equal(lines(got), lines(later)) {
		t.Fatalf("order %v", lines(got))
	}
}

func lines(es []loki.Entry) []string {
	out := make([]string, len(es))
	for i := range es {
		out[i] = es[i].Line
	}
	return out
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	dirents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, d := range dirents {
		if _, _, ok := parseSegmentName(d.Name()); ok {
			names = append(names, d.Name())
		}
	}
	return names
}
