package spill_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/outbox/spill"
	"github.com/lambda-loki/grafana-loki-extension/outbox/spill/spilltest"
)

func batch(prefix string, n, lineBytes int) []loki.Entry {
	out := make([]loki.Entry, n)
	for i := range out {
		out[i] = loki.Entry{Time: time.Unix(1_700_000_000, int64(i)), Line: prefix + strconv.Itoa(i) + strings.Repeat("x", lineBytes), RequestID: "req"}
	}
	return out
}

// readAll reads the spill back to its end: the lines, and the count lost.
func readAll(t *testing.T, s *spill.Spill) (lines []string, lost int) {
	t.Helper()
	for s.Len() > 0 {
		es, l, _ := s.ReadOldest(1000, 1<<30)
		lost += l
		for _, e := range es {
			lines = append(lines, e.Line)
		}
	}
	return lines, lost
}

// When the disk fills (the function filled /tmp), a write that does not
// fit is refused whole and says ENOSPC: every line the spill accepted
// comes back, none vanishes uncounted. Once there is room again, the
// spill takes lines again: the error does not stick.
func TestAFullDiskLosesNothingTheSpillAccepted(t *testing.T) {
	disk := spilltest.NewDisk(300 << 10)
	disk.ClaimFree(1 << 40)
	s, err := spill.Open(spill.Config{Dir: t.TempDir(), MaxBytes: 64 << 20, FreeShare: 1, Files: disk})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var accepted []string
	var refused error
	for b := 0; refused == nil; b++ {
		es := batch("a"+strconv.Itoa(b)+"-", 100, 100)
		if refused = s.Write(es); refused == nil {
			for _, e := range es {
				accepted = append(accepted, e.Line)
			}
		}
	}
	if !errors.Is(refused, syscall.ENOSPC) || len(accepted) == 0 || s.Len() != len(accepted) {
		t.Fatalf("refused with %v after %d lines; the spill holds %d", refused, len(accepted), s.Len())
	}
	if !s.Full() {
		t.Fatal("not full after the disk refused a write: every Put would try again")
	}
	// The function frees /tmp; after a while the spill looks again.
	disk.SetRoom(64 << 20)
	waitRoom(t, s)
	later := batch("later", 10, 10)
	if err := s.Write(later); err != nil {
		t.Fatalf("the spill stays broken after the disk has room again: %v", err)
	}
	for _, e := range later {
		accepted = append(accepted, e.Line)
	}
	got, lost := readAll(t, s)
	if lost != 0 || strings.Join(got, ",") != strings.Join(accepted, ",") {
		t.Fatalf("accepted %d lines, read back %d, counted lost %d", len(accepted), len(got), lost)
	}
}

// The same on a real file system that the function fills once the spill
// is in use: a small tmpfs, where the machine allows mounting one.
func TestAFullTmpfsLosesNothingTheSpillAccepted(t *testing.T) {
	dir := spilltest.Tmpfs(t, 4<<20)
	s, err := spill.Open(spill.Config{Dir: dir, MaxBytes: 64 << 20, FreeShare: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	accepted := 0
	var refused error
	for b := 0; refused == nil && b < 1000; b++ {
		if b == 3 {
			fillUp(t, filepath.Join(dir, "function-cache"))
		}
		es := batch("b"+strconv.Itoa(b)+"-", 100, 100)
		if refused = s.Write(es); refused == nil {
			accepted += len(es)
		}
	}
	if !errors.Is(refused, syscall.ENOSPC) || accepted < 300 || s.Len() != accepted {
		t.Fatalf("refused %v; accepted %d, the spill holds %d", refused, accepted, s.Len())
	}
	got, lost := readAll(t, s)
	if len(got) != accepted || lost != 0 {
		t.Fatalf("accepted %d, read back %d, counted lost %d", accepted, len(got), lost)
	}
}

// fillUp writes path until its file system has no room left.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for chunk := make([]byte, 64<<10); ; {
		if _, err := f.Write(chunk); errors.Is(err, syscall.ENOSPC) {
			return
		} else if err != nil {
			t.Fatal(err)
		}
	}
}

// With too little room for a first segment, the spill is full for a
// while, not for good: it looks again once the function has freed space,
// though no segment was ever read back.
func TestNoRoomAtTheFirstSegmentDoesNotLatch(t *testing.T) {
	disk := spilltest.NewDisk(1000) // less than a segment's share
	s, err := spill.Open(spill.Config{Dir: t.TempDir(), MaxBytes: 64 << 20, FreeShare: 0.5, Files: disk})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Write(batch("a", 1, 10)); !errors.Is(err, spill.ErrFull) {
		t.Fatalf("wrote with no room: %v", err)
	}
	disk.SetRoom(64 << 20)
	waitRoom(t, s)
	if err := s.Write(batch("a", 1, 10)); err != nil {
		t.Fatalf("still refused once there is room: %v", err)
	}
}

// waitRoom waits until the spill looks at the disk again (about a second).
func waitRoom(t *testing.T, s *spill.Spill) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); s.Full(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the spill stays full after the disk has room")
		}
	}
}
