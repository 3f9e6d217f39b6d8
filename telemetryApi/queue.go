package telemetryApi

import (
	"math"
	"sync"
	"time"

	"github.com/golang-collections/go-datastructures/queue"
	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// Queue holds log entries between the listener and the dispatcher, bounded by
// a number of entries and of bytes. When a bound is hit the oldest entries
// are dropped and counted, so memory stays bounded however long Loki is away.
//
// Entries arrive one telemetry batch at a time, and each batch goes into the
// go-datastructures queue as one item: one allocation per batch, not per
// line. That queue cannot put an item back at its front, so the entries a
// failed push returns, and the rest of a partly taken batch, wait in head,
// which is always older than anything in batches.
type Queue struct {
	mu         sync.Mutex
	head       []loki.Entry
	batches    *queue.Queue // of []loki.Entry, oldest first
	entries    int
	bytes      int
	maxEntries int
	maxBytes   int

	dropped      int // since the last TakeDropped
	droppedBytes int

	// backlog, when set by NotifyBacklog, is signalled by Put whenever at
	// least backlogBytes are queued.
	backlog      chan struct{}
	backlogBytes int
}

// NewQueue returns an empty queue bounded by maxEntries and maxBytes.
func NewQueue(maxEntries, maxBytes int) *Queue {
	return &Queue{batches: queue.New(64), maxEntries: maxEntries, maxBytes: maxBytes}
}

// Put appends entries, dropping the oldest entries if the bounds are
// exceeded. The queue keeps the slice: the caller must not reuse it.
func (q *Queue) Put(entries []loki.Entry) {
	if len(entries) == 0 {
		return
	}
	n := sizeOf(entries)
	q.mu.Lock()
	defer q.mu.Unlock()
	// Put never fails on a queue that is not disposed, and this one never is.
	_ = q.batches.Put(entries)
	q.entries += len(entries)
	q.bytes += n
	q.enforceBounds()
	if q.backlog != nil && q.bytes >= q.backlogBytes {
		select {
		case q.backlog <- struct{}{}:
		default: // a signal is already pending
		}
	}
}

// NotifyBacklog returns a channel that receives a value (without blocking
// Put; signals do not pile up) each time Put leaves at least bytes queued,
// so that a full request's worth can be pushed without waiting for the end
// of the invocation. Call it once, before the queue is used.
func (q *Queue) NotifyBacklog(bytes int) <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.backlog = make(chan struct{}, 1)
	q.backlogBytes = bytes
	return q.backlog
}

// Requeue puts entries back at the front, as the oldest: they are what a
// push could not deliver, and they go out first next time.
func (q *Queue) Requeue(entries []loki.Entry) {
	if len(entries) == 0 {
		return
	}
	n := sizeOf(entries)
	q.mu.Lock()
	defer q.mu.Unlock()
	head := make([]loki.Entry, 0, len(entries)+len(q.head))
	q.head = append(append(head, entries...), q.head...)
	q.entries += len(entries)
	q.bytes += n
	q.enforceBounds()
}

// Take removes and returns up to max of the oldest entries; it never blocks.
func (q *Queue) Take(max int) []loki.Entry {
	return q.TakeUpTo(max, math.MaxInt)
}

// TakeUpTo removes and returns the oldest entries, up to maxEntries of them
// and as many as fit in maxBytes (as Entry.Size counts), but at least one
// when the queue is not empty; it never blocks. Bounding the bytes bounds
// what a push holds outside the queue while Loki is slow or away.
func (q *Queue) TakeUpTo(maxEntries, maxBytes int) []loki.Entry {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.entries == 0 || maxEntries <= 0 {
		return nil
	}
	out := make([]loki.Entry, 0, min(maxEntries, q.entries))
	size := 0
	for len(out) < maxEntries {
		if len(q.head) == 0 && !q.popBatchIntoHead() {
			break
		}
		n := 0
		for n < min(maxEntries-len(out), len(q.head)) {
			es := q.head[n].Size()
			if size+es > maxBytes && (n > 0 || len(out) > 0) {
				break
			}
			size += es
			n++
		}
		out = append(out, q.head[:n]...)
		// The taken slots would keep their lines alive for as long as the
		// rest of their batch waits; the lines now belong to the caller.
		clear(q.head[:n])
		q.head = q.head[n:]
		if len(q.head) > 0 {
			break // stopped by a bound
		}
	}
	q.entries -= len(out)
	q.bytes -= size
	if len(q.head) == 0 {
		q.head = nil // let the batch's backing array go
	}
	return out
}

// Oldest returns the time of the oldest entry queued; false when empty.
func (q *Queue) Oldest() (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.head) == 0 && !q.popBatchIntoHead() {
		return time.Time{}, false
	}
	return q.head[0].Time, true
}

// Len is the number of entries queued.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.entries
}

// Bytes is the size of the entries queued, as Entry.Size counts it.
func (q *Queue) Bytes() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// TakeDropped returns how many entries, and bytes, were dropped for the
// bounds since the last call, and resets the counts.
func (q *Queue) TakeDropped() (entries, bytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	entries, bytes = q.dropped, q.droppedBytes
	q.dropped, q.droppedBytes = 0, 0
	return entries, bytes
}

// popBatchIntoHead moves the oldest batch into head; head must be empty.
func (q *Queue) popBatchIntoHead() bool {
	if q.batches.Len() == 0 {
		return false
	}
	// Get blocks only on an empty queue, and only this type takes from it,
	// under q.mu, after checking Len.
	items, err := q.batches.Get(1)
	if err != nil || len(items) == 0 {
		return false
	}
	q.head, _ = items[0].([]loki.Entry)
	return true
}

// enforceBounds drops the oldest entries until both bounds hold.
func (q *Queue) enforceBounds() {
	for q.entries > q.maxEntries || q.bytes > q.maxBytes {
		if len(q.head) == 0 && !q.popBatchIntoHead() {
			return
		}
		for len(q.head) > 0 && (q.entries > q.maxEntries || q.bytes > q.maxBytes) {
			size := q.head[0].Size()
			q.head[0] = loki.Entry{} // release the line
			q.head = q.head[1:]
			q.entries--
			q.bytes -= size
			q.dropped++
			q.droppedBytes += size
		}
	}
}

func sizeOf(entries []loki.Entry) int {
	n := 0
	for i := range entries {
		n += entries[i].Size()
	}
	return n
}
