package telemetryApi

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// fakePusher delivers, rejects or leaves undelivered the first n entries of
// each push as told, and remembers what it got.
type fakePusher struct {
	pushed      [][]string
	undelivered int // entries at the end of each push returned as undelivered
	rejected    int
}

func (p *fakePusher) Push(_ context.Context, entries []loki.Entry) loki.Result {
	p.pushed = append(p.pushed, texts(entries))
	n := len(entries)
	res := loki.Result{Requests: 1}
	und := min(p.undelivered, n)
	rej := min(p.rejected, n-und)
	res.Undelivered = entries[n-und:]
	res.Rejected = rej
	res.Delivered = n - und - rej
	if und > 0 || rej > 0 {
		res.Err = errors.New("loki said no")
	}
	return res
}

func TestDispatcherFlush(t *testing.T) {
	tests := []struct {
		name          string
		queued        int
		minBatch      int
		force         bool
		pusher        fakePusher
		wantPushes    int
		wantDelivered int
		wantRemaining int
		wantSkipped   bool
		heldLong      bool // the lines were written longer than maxHold ago
	}{
		{"below the minimum batch waits", 3, 10, false, fakePusher{}, 0, 0, 3, true, false},
		{"at the minimum batch pushes", 10, 10, false, fakePusher{}, 1, 10, 0, false, false},
		{"forced (SHUTDOWN) pushes whatever is there", 3, 10, true, fakePusher{}, 1, 3, 0, false, false},
		{"undelivered go back to the queue", 5, 1, false, fakePusher{undelivered: 2}, 1, 3, 2, false, false},
		{"rejected are counted, not requeued", 5, 1, false, fakePusher{rejected: 2}, 1, 3, 0, false, false},
		{"more than one take", takeSize + 5, 1, false, fakePusher{}, 2, takeSize + 5, 0, false, false},
		{"empty queue", 0, 1, true, fakePusher{}, 0, 0, 0, false, false},
		// Loki refuses lines about an hour older than its stream's newest.
		{"below the minimum batch but held past maxHold pushes", 3, 10, false, fakePusher{}, 1, 3, 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQueue(1_000_000, 1<<30)
			entries := lines("l", tt.queued)
			if tt.heldLong {
				for i := range entries {
					entries[i].Time = time.Now().Add(-maxHold - time.Minute)
				}
			}
			q.Put(entries)
			d := NewDispatcher(q, &tt.pusher, tt.minBatch)
			rep := d.Flush(t.Context(), tt.force)
			if len(tt.pusher.pushed) != tt.wantPushes || rep.Delivered != tt.wantDelivered || rep.Remaining != tt.wantRemaining || rep.Skipped != tt.wantSkipped {
				t.Fatalf("pushes %d, report %+v", len(tt.pusher.pushed), rep)
			}
			if rep.Rejected != tt.pusher.rejected && tt.queued > 0 && !tt.wantSkipped {
				t.Fatalf("rejected %d", rep.Rejected)
			}
			if !rep.Skipped && rep.Requeued != rep.Remaining {
				t.Fatalf("requeued %d but %d remain", rep.Requeued, rep.Remaining)
			}
		})
	}
}

func TestDispatcherRequeuedGoFirstNextTime(t *testing.T) {
	q := NewQueue(100, 1<<20)
	q.Put(lines("a", 3))
	p := &fakePusher{undelivered: 2}
	d := NewDispatcher(q, p, 1)
	d.Flush(t.Context(), false)
	q.Put(lines("b", 1))
	p.undelivered = 0
	d.Flush(t.Context(), false)
	if got := p.pushed[1]; !equal(got, []string{"a1", "a2", "b0"}) {
		t.Fatalf("second push %v", got)
	}
}

func TestDispatcherStopsWhenContextEnds(t *testing.T) {
	q := NewQueue(100, 1<<20)
	q.Put(lines("a", 3))
	p := &fakePusher{}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	rep := NewDispatcher(q, p, 1).Flush(ctx, true)
	if len(p.pushed) != 0 || rep.Remaining != 3 {
		t.Fatalf("pushed %d, remaining %d", len(p.pushed), rep.Remaining)
	}
}
