package spill

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

func entries(prefix string, n, lineBytes int) []loki.Entry {
	out := make([]loki.Entry, n)
	// Runs of entries share metadata, as an invocation's lines do; some
	// carry none.
	shared := []*loki.Metadata{nil, loki.NewMetadata(loki.Pair{Name: "log_stream", Value: "2026/01/02/[$LATEST]" + prefix}),
		loki.NewMetadata(loki.Pair{Name: "duration_ms", Value: "12.5"}, loki.Pair{Name: "status", Value: "timeout"})}
	for i := range out {
		out[i] = loki.Entry{
			Time: time.Unix(1_700_000_000, int64(i)*1_000_001), Line: prefix + strconv.Itoa(i) + strings.Repeat("x", lineBytes),
			Stream: loki.StreamType(i % 3), Level: "warn", RequestID: "req-" + prefix, TraceID: "5759e988bd862e3fe1be46a994272793",
			Meta: shared[i/10%len(shared)],
		}
	}
	return out
}

func openSpill(t *testing.T, maxBytes int64) *Spill {
	t.Helper()
	s, err := Open(Config{Dir: filepath.Join(t.TempDir(), "spill"), MaxBytes: maxBytes, FreeShare: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Entries come back oldest first, whole: time to the nanosecond, stream,
// level, request and trace IDs, line, shared metadata (shared again by the
// entries that shared it); segment by segment, each file deleted once read.
func TestWrittenEntriesComeBackInOrder(t *testing.T) {
	s := openSpill(t, 64<<20)
	var want []loki.Entry
	for b := range 30 { // about 3 segments of 1 MiB
		batch := entries(strconv.Itoa(b)+"-", 100, 1000)
		want = append(want, batch...)
		if err := s.Write(batch); err != nil {
			t.Fatal(err)
		}
	}
	if s.Len() != len(want) || s.Bytes() < int64(len(want))*1000 {
		t.Fatalf("len %d, bytes %d", s.Len(), s.Bytes())
	}
	files, _ := os.ReadDir(s.dir)
	if len(files) < 3 {
		t.Fatalf("%d segment files for about 3 MiB", len(files))
	}
	var got []loki.Entry
	segStart := map[int]bool{}
	for {
		segStart[len(got)] = true
		seg, lost, err := s.ReadOldest(1<<30, 1<<30)
		if err != nil || lost != 0 {
			t.Fatal(lost, err)
		}
		if seg == nil {
			break
		}
		got = append(got, seg...)
	}
	if len(got) != len(want) || s.Len() != 0 || s.Bytes() != 0 {
		t.Fatalf("read back %d of %d; left %d entries, %d bytes", len(got), len(want), s.Len(), s.Bytes())
	}
	for i := range want {
		g, w := got[i], want[i]
		if !g.Time.Equal(w.Time) || g.Line != w.Line || g.Stream != w.Stream || g.Level != w.Level || g.RequestID != w.RequestID || g.TraceID != w.TraceID ||
			g.Meta.Encoded() != w.Meta.Encoded() {
			t.Fatalf("entry %d: %+v, want %+v", i, g, w)
		}
		if !segStart[i] && i%10 != 0 && got[i-1].Meta != g.Meta {
			t.Fatalf("entry %d does not share its metadata with the one before, as written", i)
		}
	}
	if files, _ := os.ReadDir(s.dir); len(files) != 0 {
		t.Fatalf("%d files left after reading everything", len(files))
	}
}

func TestFullAtItsBound(t *testing.T) {
	s := openSpill(t, 4<<20)
	var err error
	written := 0
	for err == nil {
		batch := entries("a", 100, 1000)
		if err = s.Write(batch); err == nil {
			written += len(batch)
		}
	}
	if !errors.Is(err, ErrFull) || s.Bytes() > 4<<20 || s.Len() != written {
		t.Fatalf("err %v, %d bytes, %d of %d entries", err, s.Bytes(), s.Len(), written)
	}
	// Reading a segment back makes room again.
	if _, _, err := s.ReadOldest(1<<30, 1<<30); err != nil {
		t.Fatal(err)
	}
	if s.Full() {
		t.Fatal("still full after a segment was read back")
	}
	if err := s.Write(entries("b", 10, 100)); err != nil {
		t.Fatal(err)
	}
}

// The spill takes no more than its share of the free space: with a share
// too small for one segment it is full at once.
func TestFreeShare(t *testing.T) {
	s, err := Open(Config{Dir: filepath.Join(t.TempDir(), "spill"), MaxBytes: 1 << 40, FreeShare: 1e-9})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Write(entries("a", 1, 10)); !errors.Is(err, ErrFull) {
		t.Fatalf("wrote beyond its share of the free space: %v", err)
	}
}

func TestOpenFailsWhereItCannotWrite(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// A directory cannot be made below a file, as root or not.
	if _, err := Open(Config{Dir: filepath.Join(file, "spill"), MaxBytes: 1 << 20}); err == nil {
		t.Fatal("opened a spill where no directory can be")
	}
}
