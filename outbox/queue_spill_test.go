package outbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/outbox/spill"
	"github.com/lambda-loki/grafana-loki-extension/outbox/spill/spilltest"
)

func spillFor(t *testing.T, maxBytes int64) *spill.Spill {
	t.Helper()
	sp, err := spill.Open(spill.Config{Dir: t.TempDir(), MaxBytes: maxBytes, FreeShare: 1})
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// Past its memory bound the queue moves its oldest lines to the spill
// instead of dropping them, and gives everything back oldest first: what a
// failed push returned, then the spill, then the batches in memory.
func TestQueueSpillsInsteadOfDropping(t *testing.T) {
	one := loki.Entry{Line: "b000"}.Size()
	q := NewQueue(1000, 20*one, spillFor(t, 64<<20))
	var want []string
	for b := range 10 {
		batch := lines("b"+strconv.Itoa(b)+"-", 10)
		for _, e := range batch {
			want = append(want, e.Line)
		}
		q.Put(batch)
	}
	dropped, _, spilled := q.TakeDropped()
	if dropped != 0 || spilled == 0 || q.Len() != 100 || q.inSpill() != spilled || q.Bytes() <= 0 {
		t.Fatalf("dropped %d, spilled %d, len %d, in the spill %d", dropped, spilled, q.Len(), q.inSpill())
	}
	// A push takes the oldest 5 and fails: they go back first.
	taken := q.take(5)
	q.Requeue(taken)
	var got []string
	for q.Len() > 0 {
		for _, e := range q.take(7) {
			got = append(got, e.Line)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("order:\n%v\nwant\n%v", got, want)
	}
	if d, _, _ := q.TakeDropped(); d != 0 || q.Bytes() != 0 {
		t.Fatalf("dropped %d, %d bytes left", d, q.Bytes())
	}
}

// With the spill full, the lines past both are dropped, counted exactly,
// and the reason is kept for the log.
func TestQueueDropsWhatTheSpillCannotTake(t *testing.T) {
	q := NewQueue(100_000, 1<<20, spillFor(t, 4<<20))
	total := 0
	for b := range 40 {
		batch := lines("b"+strconv.Itoa(b)+"-", 1000)
		for i := range batch {
			batch[i].Line += string(make([]byte, 200))
		}
		total += len(batch)
		q.Put(batch)
	}
	d := q.TakeDrops()
	if d.Dropped == 0 || d.Spilled == 0 || d.Dropped+q.Len() != total {
		t.Fatalf("written %d: dropped %d, spilled %d, queued %d", total, d.Dropped, d.Spilled, q.Len())
	}
	if !errors.Is(d.SpillErr, spill.ErrFull) || d.ByReason[DropSpillFull] != d.Dropped {
		t.Fatalf("reason %v, by reason %v", d.SpillErr, d.ByReason)
	}
	if q.TakeDrops().SpillErr != nil {
		t.Fatal("the reason is given once")
	}
}

// Close says how many lines were still queued, spilled ones included, and
// removes the spill's files.
func TestQueueCloseCountsAndRemovesTheSpill(t *testing.T) {
	dir := t.TempDir()
	sp, err := spill.Open(spill.Config{Dir: dir, MaxBytes: 64 << 20, FreeShare: 1})
	if err != nil {
		t.Fatal(err)
	}
	q := NewQueue(1000, 10*loki.Entry{Line: "a00"}.Size(), sp)
	q.Put(lines("a", 50))
	if q.inSpill() == 0 {
		t.Fatal("nothing spilled")
	}
	if left := q.Close(); left != 50 {
		t.Fatalf("Close counted %d, want 50", left)
	}
	if _, err := os.Stat(filepath.Join(dir, spill.Subdir)); !os.IsNotExist(err) {
		t.Fatalf("spill directory left: %v", err)
	}
}

// An outage's failed attempts (take a request's worth, the push fails,
// requeue) with a small memory bound and a roomy spill: nothing is
// dropped while the spill has room, however large what comes back from
// the spill counts in memory, and everything comes out in order.
func TestQueueDropsNothingWhileTheSpillHasRoom(t *testing.T) {
	q := NewQueue(100_000, 1<<20, spillFor(t, 128<<20))
	var want []string
	put := func(b int) {
		batch := lines("b"+strconv.Itoa(b)+"-", 1000)
		for i := range batch {
			batch[i].Line += strings.Repeat("x", 100)
			batch[i].RequestID, batch[i].TraceID = "8f5b4b3c-6a3e-4c1e-9d3a-2b1c0d9e8f7a", "5759e988bd862e3fe1be46a994272793"
			want = append(want, batch[i].Line)
		}
		q.Put(batch)
	}
	b := 0
	for range 10 {
		for range 10 {
			put(b)
			b++
		}
		q.Requeue(q.TakeUpTo(takeSize, takeBytes))
	}
	if d := q.TakeDrops(); d.Dropped != 0 {
		t.Fatalf("dropped %d lines (%v) with the spill at %d bytes of 128 MiB", d.Dropped, d.ByReason, q.spill.Bytes())
	}
	if q.Len() != len(want) {
		t.Fatalf("queued %d of %d", q.Len(), len(want))
	}
	var got []string
	for q.Len() > 0 {
		got = append(got, texts(q.TakeUpTo(takeSize, takeBytes))...)
		if q.bytes > q.maxBytes {
			t.Fatalf("%d bytes in memory, beyond the bound of %d", q.bytes, q.maxBytes)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("order: %d lines back of %d", len(got), len(want))
	}
}

// Each drop is counted under its true reason.
func TestQueueDropReasons(t *testing.T) {
	big := func(n int) []loki.Entry {
		batch := lines("x", n)
		for i := range batch {
			batch[i].Line += strings.Repeat("x", 1000)
		}
		return batch
	}
	disk := spilltest.NewDisk(0)
	disk.ClaimFree(1 << 40)
	noRoom, err := spill.Open(spill.Config{Dir: t.TempDir(), MaxBytes: 64 << 20, FreeShare: 1, Files: disk})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		sp   *spill.Spill
		want DropReason
	}{
		{"no spill", nil, DropNoSpill},
		{"spill full", spillFor(t, 4<<20), DropSpillFull},
		{"disk full", noRoom, DropSpillError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQueue(100_000, 1<<20, tt.sp)
			for range 10 {
				q.Put(big(1000))
			}
			d := q.TakeDrops()
			if d.Dropped == 0 || d.ByReason[tt.want] != d.Dropped {
				t.Fatalf("dropped %d, by reason %v, want all under %s", d.Dropped, d.ByReason, tt.want.Name())
			}
			if tt.want == DropSpillError && !errors.Is(d.SpillErr, syscall.ENOSPC) {
				t.Fatalf("the spill's error %v does not say ENOSPC", d.SpillErr)
			}
		})
	}
}

// A spill segment that cannot be read back costs its own lines, counted as
// unreadable; the next segment still comes before the newer lines in
// memory.
func TestQueueKeepsOrderPastAnUnreadableSegment(t *testing.T) {
	dir := t.TempDir()
	sp, err := spill.Open(spill.Config{Dir: dir, MaxBytes: 64 << 20, FreeShare: 1})
	if err != nil {
		t.Fatal(err)
	}
	q := NewQueue(100_000, 1<<20, sp)
	total := 0
	for b := range 40 {
		batch := lines("b"+strconv.Itoa(1000+b)+"-", 1000)
		for i := range batch {
			batch[i].Line = fmt.Sprintf("b%03d-%04d %s", b, i, strings.Repeat("x", 200))
		}
		total += len(batch)
		q.Put(batch)
	}
	segments, _ := filepath.Glob(filepath.Join(dir, spill.Subdir, "segment-*.spill"))
	if len(segments) < 3 {
		t.Fatalf("%d segments", len(segments))
	}
	slices.Sort(segments)
	if err := os.Remove(segments[0]); err != nil { // the function's cleanup, say
		t.Fatal(err)
	}
	var got []string
	for q.Len() > 0 {
		got = append(got, texts(q.TakeUpTo(takeSize, takeBytes))...)
	}
	if !slices.IsSorted(got) {
		t.Fatal("lines came out of order after an unreadable segment")
	}
	d := q.TakeDrops()
	if d.ByReason[DropUnreadable] == 0 || d.Dropped != d.ByReason[DropUnreadable] || len(got)+d.Dropped != total {
		t.Fatalf("put %d: got %d, dropped %v", total, len(got), d.ByReason)
	}
}

// What a killed process left in the spill, a request's worth or more, is
// signalled as a backlog at once, to go out in the background.
func TestQueueSignalsALeftoverBacklog(t *testing.T) {
	dir := t.TempDir()
	killed, err := spill.Open(spill.Config{Dir: dir, MaxBytes: 64 << 20, FreeShare: 1})
	if err != nil {
		t.Fatal(err)
	}
	batch := lines("left", 5000)
	for i := range batch {
		batch[i].Line += strings.Repeat("x", 300)
	}
	if err := killed.Write(batch); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		threshold int
		want      bool
	}{{1 << 20, true}, {64 << 20, false}} {
		sp, err := spill.Open(spill.Config{Dir: dir, MaxBytes: 64 << 20, FreeShare: 1})
		if err != nil {
			t.Fatal(err)
		}
		q := NewQueue(100_000, 16<<20, sp)
		select {
		case <-q.NotifyBacklog(tt.threshold):
			if !tt.want {
				t.Errorf("signalled %d bytes left as a backlog of %d", sp.Bytes(), tt.threshold)
			}
		default:
			if tt.want {
				t.Errorf("%d bytes left, not signalled as a backlog of %d", sp.Bytes(), tt.threshold)
			}
		}
	}
}
