package outbox

import (
	"slices"
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/internal/lokitest"
	"github.com/lambda-loki/grafana-loki-extension/loki"
)

var (
	lines = lokitest.Numbered
	texts = lokitest.Lines
)

func TestQueueKeepsOrderAcrossBatchesAndPartialTakes(t *testing.T) {
	q := NewQueue(100, 1<<20, nil)
	q.Put(lines("a", 3))
	q.Put(lines("b", 2))
	if got := texts(q.take(2)); !slices.Equal(got, []string{"a0", "a1"}) {
		t.Fatalf("first take %v", got)
	}
	if got := texts(q.take(10)); !slices.Equal(got, []string{"a2", "b0", "b1"}) {
		t.Fatalf("second take %v", got)
	}
	if q.Len() != 0 || q.Bytes() != 0 || q.take(1) != nil {
		t.Fatalf("queue not empty: %d entries, %d bytes", q.Len(), q.Bytes())
	}
}

func TestQueueRequeueGoesFirst(t *testing.T) {
	q := NewQueue(100, 1<<20, nil)
	q.Put(lines("new", 2))
	q.Requeue(lines("old", 2))
	if got := texts(q.take(10)); !slices.Equal(got, []string{"old0", "old1", "new0", "new1"}) {
		t.Fatalf("got %v", got)
	}
}

func TestQueueBoundsDropOldestAndCount(t *testing.T) {
	one := loki.Entry{Line: "b0"}.Size()
	tests := []struct {
		name                 string
		maxEntries, maxBytes int
		put                  int
		wantFirst            string
		wantLen, wantDropped int
	}{
		{"entry bound", 5, 1 << 20, 8, "b3", 5, 3},
		{"byte bound", 1000, 4 * one, 8, "b4", 4, 4},
		{"under both bounds", 10, 1 << 20, 8, "b0", 8, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQueue(tt.maxEntries, tt.maxBytes, nil)
			q.Put(lines("b", tt.put))
			dropped, droppedBytes, _ := q.TakeDropped()
			if q.Len() != tt.wantLen || dropped != tt.wantDropped || droppedBytes != tt.wantDropped*one {
				t.Fatalf("len %d dropped %d (%d bytes)", q.Len(), dropped, droppedBytes)
			}
			if got := q.take(1); got[0].Line != tt.wantFirst {
				t.Fatalf("oldest left is %q, want %q", got[0].Line, tt.wantFirst)
			}
			if d, _, _ := q.TakeDropped(); d != 0 {
				t.Fatalf("TakeDropped did not reset: %d", d)
			}
		})
	}
}

func TestQueueRequeueBeyondBoundDropsTheRequeued(t *testing.T) {
	q := NewQueue(3, 1<<20, nil)
	q.Put(lines("new", 2))
	q.Requeue(lines("old", 2))
	if got := texts(q.take(10)); !slices.Equal(got, []string{"old1", "new0", "new1"}) {
		t.Fatalf("got %v", got)
	}
}
