package outbox

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/outbox/spill"
)

func spillFor(t *testing.T, maxBytes int64) *spill.Spill {
	t.Helper()
	sp, err := spill.Open(spill.Config{Dir: filepath.Join(t.TempDir(), "spill"), MaxBytes: maxBytes, FreeShare: 1})
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
	dropped, _, spilled := q.TakeDropped()
	if dropped == 0 || spilled == 0 || dropped+q.Len() != total {
		t.Fatalf("written %d: dropped %d, spilled %d, queued %d", total, dropped, spilled, q.Len())
	}
	if err := q.SpillErr(); !errors.Is(err, spill.ErrFull) {
		t.Fatalf("reason %v", err)
	}
	if q.SpillErr() != nil {
		t.Fatal("the reason is given once")
	}
}

// Close says how many lines were still queued, spilled ones included, and
// removes the spill's files.
func TestQueueCloseCountsAndRemovesTheSpill(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spill")
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
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("spill directory left: %v", err)
	}
}
