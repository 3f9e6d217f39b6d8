package outbox

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/lokitest"
	"github.com/lambda-loki/grafana-loki-extension/loki"
)

func TestQueueTakeUpToBoundsBytesButTakesAtLeastOne(t *testing.T) {
	entry := func(s string) loki.Entry { return loki.Entry{Line: s} }
	big := strings.Repeat("b", 100)
	ov := loki.Entry{}.Size() // what an entry counts beyond its line
	tests := []struct {
		name        string
		batches     [][]loki.Entry
		maxEntries  int
		maxBytes    int
		want        int
		wantBytesIn int // bytes left queued
	}{
		{"entries bound", [][]loki.Entry{lines("a", 5)}, 3, 1 << 20, 3, 2 * (2 + ov)},
		{"bytes bound inside a batch", [][]loki.Entry{{entry(big), entry(big), entry(big)}}, 10, 2 * (100 + ov), 2, 100 + ov},
		{"bytes bound across batches", [][]loki.Entry{{entry(big)}, {entry(big)}, {entry(big)}}, 10, 2*(100+ov) + 10, 2, 100 + ov},
		{"one entry larger than the bound", [][]loki.Entry{{entry(big), entry("x")}}, 10, 10, 1, 1 + ov},
		{"everything fits", [][]loki.Entry{lines("a", 2), lines("b", 2)}, 10, 1 << 20, 4, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQueue(1000, 1<<20, nil)
			total := 0
			for _, b := range tt.batches {
				total += len(b)
				q.Put(b)
			}
			got := q.TakeUpTo(tt.maxEntries, tt.maxBytes)
			if len(got) != tt.want || q.Len() != total-tt.want || q.Bytes() != tt.wantBytesIn {
				t.Fatalf("took %d (want %d); left %d entries, %d bytes (want %d bytes)", len(got), tt.want, q.Len(), q.Bytes(), tt.wantBytesIn)
			}
			// The rest comes out in order, and the accounting ends at zero.
			rest := q.take(1000)
			if len(rest) != total-tt.want || q.Len() != 0 || q.Bytes() != 0 {
				t.Fatalf("rest %d, left %d entries, %d bytes", len(rest), q.Len(), q.Bytes())
			}
		})
	}
}

func TestQueueBacklogSignal(t *testing.T) {
	q := NewQueue(1000, 1<<20, nil)
	backlog := q.NotifyBacklog(10 * (2 + loki.Entry{}.Size()))
	signalled := func() bool {
		select {
		case <-backlog:
			return true
		default:
			return false
		}
	}
	q.Put(lines("a", 9))
	if signalled() {
		t.Fatal("signalled below the threshold")
	}
	q.Put(lines("b", 1))
	q.Put(lines("c", 1)) // a second Put does not block, and signals do not pile up
	if !signalled() || signalled() {
		t.Fatal("want exactly one pending signal once the threshold is reached")
	}
	q.take(100)
	q.Put(lines("d", 1))
	if signalled() {
		t.Fatal("signalled after the queue was emptied")
	}
}

// A push waiting for one in progress gives up when its own budget ends:
// a background push must not stretch the time before /next.
func TestDispatcherWaitForAFlushInProgressIsBounded(t *testing.T) {
	q := NewQueue(1000, 1<<20, nil)
	p := &lokitest.Pusher{}
	started, release := p.Hold()
	d := NewDispatcher(q, p, DispatcherConfig{})
	q.Put(lines("a", 3))
	done := make(chan Report)
	go func() { done <- d.Push(context.Background(), BeforeNext) }()
	<-started
	q.Put(lines("b", 2))

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep := d.Push(ctx, Shutdown)
	if took := time.Since(start); took > time.Second || !errors.Is(rep.Err, context.DeadlineExceeded) || rep.Remaining != 2 || rep.Delivered != 0 {
		t.Fatalf("waited %s: %+v", took, rep)
	}
	release()
	// The push in progress goes on to push what came meanwhile.
	if first := <-done; first.Delivered != 5 {
		t.Fatalf("the push in progress delivered %d", first.Delivered)
	}
}
