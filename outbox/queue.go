package outbox

import (
	"math"
	"sync"
	"time"

	"github.com/golang-collections/go-datastructures/queue"
	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/outbox/spill"
)

// Queue holds log entries between the listener and the dispatcher. What it
// keeps in memory is bounded by a number of entries and of bytes; past
// them its oldest entries go to a spill file, when it has one with room,
// or are dropped and counted, so memory stays bounded however long Loki is
// away.
//
// Entries arrive one telemetry batch at a time, and each batch goes into the
// go-datastructures queue as one item: one allocation per batch, not per
// line. The order is head, then the spill, then front, then those batches:
// head holds what a failed push returned and the rest of a partly taken
// batch or spill segment, which is older than anything spilled; front holds
// a batch the spill could not take, older than the batches behind it.
type Queue struct {
	mu         sync.Mutex
	head       []loki.Entry
	front      []loki.Entry
	batches    *queue.Queue // of []loki.Entry, oldest first
	entries    int          // in memory
	bytes      int
	maxEntries int
	maxBytes   int
	spill      *spill.Spill // nil: drop instead

	// drops counts since the last TakeDrops.
	drops Drops

	// backlog, when set by NotifyBacklog, is signalled by Put whenever at
	// least backlogBytes are queued.
	backlog      chan struct{}
	backlogBytes int
}

// NewQueue returns an empty queue bounded by maxEntries and maxBytes in
// memory. With a spill, entries past those bounds go there first.
func NewQueue(maxEntries, maxBytes int, sp *spill.Spill) *Queue {
	return &Queue{batches: queue.New(64), maxEntries: maxEntries, maxBytes: maxBytes, spill: sp}
}

// Put appends entries, moving the oldest to the spill or dropping them if
// the bounds are exceeded. The queue keeps the slice: the caller must not
// reuse it.
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
// Put; signals do not pile up) each time Put leaves at least bytes queued
// in memory, so that a full request's worth can be pushed without waiting
// for the end of the invocation. Call it once, before the queue is used. A
// queue that starts with that much in its spill (what a killed process
// left) signals at once: that goes out in the background, not in the
// first invocation's billed time.
func (q *Queue) NotifyBacklog(bytes int) <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.backlog = make(chan struct{}, 1)
	q.backlogBytes = bytes
	if q.spill != nil && q.spill.Bytes() >= int64(bytes) {
		q.backlog <- struct{}{}
	}
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

// take removes and returns up to max of the oldest entries; it never blocks.
func (q *Queue) take(max int) []loki.Entry {
	return q.TakeUpTo(max, math.MaxInt)
}

// TakeUpTo removes and returns the oldest entries, up to maxEntries of them
// and as many as fit in maxBytes (as Entry.Size counts), but at least one
// when the queue is not empty; it never blocks. Bounding the bytes bounds
// what a push holds outside the queue while Loki is slow or away.
func (q *Queue) TakeUpTo(maxEntries, maxBytes int) []loki.Entry {
	q.mu.Lock()
	defer q.mu.Unlock()
	if maxEntries <= 0 {
		return nil
	}
	var out []loki.Entry
	size := 0
	for len(out) < maxEntries {
		if len(q.head) == 0 && !q.refillHead() {
			break
		}
		if out == nil {
			out = make([]loki.Entry, 0, min(maxEntries, len(q.head)))
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
		q.entries -= n
		if len(q.head) > 0 {
			break // stopped by a bound
		}
	}
	q.bytes -= size
	if len(q.head) == 0 {
		q.head = nil // let the batch's backing array go
	}
	// What came back from the spill may have taken memory past its bounds
	// (at least one entry comes back, room or not).
	q.enforceBounds()
	return out
}

// Oldest returns the time of the oldest entry queued; false when empty.
func (q *Queue) Oldest() (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.head) == 0 && !q.refillHead() {
		return time.Time{}, false
	}
	return q.head[0].Time, true
}

// Len is the number of entries queued, in memory and spilled.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.entries + q.spilledLen()
}

// Bytes is the size of the entries queued, in memory as Entry.Size counts
// it, and spilled as their files hold them.
func (q *Queue) Bytes() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.spill != nil {
		return q.bytes + int(q.spill.Bytes())
	}
	return q.bytes
}

// inSpill is the number of entries waiting in the spill file.
func (q *Queue) inSpill() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.spilledLen()
}

func (q *Queue) spilledLen() int {
	if q.spill == nil {
		return 0
	}
	return q.spill.Len()
}

// TakeDropped returns how many entries, and bytes, were dropped, and how
// many moved to the spill, since the last call, and resets the counts.
func (q *Queue) TakeDropped() (entries, bytes, spilled int) {
	d := q.TakeDrops()
	return d.Dropped, d.DroppedBytes, d.Spilled
}

// TakeDrops returns what was dropped, why, and what moved to the spill,
// since the last call, and resets the counts.
func (q *Queue) TakeDrops() Drops {
	q.mu.Lock()
	defer q.mu.Unlock()
	d := q.drops
	q.drops = Drops{}
	return d
}

// Close drops everything queued, in memory and spilled, and removes the
// spill's files. It returns how many entries were still queued.
func (q *Queue) Close() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	left := q.entries + q.spilledLen()
	if q.spill != nil {
		_ = q.spill.Close()
	}
	return left
}

// refillHead moves the next oldest entries into head, which must be empty:
// from the spill (a part of a segment, within a quarter of the memory
// bounds, so that reading back never takes memory past them), else front,
// else the oldest batch. What the spill cannot give back is counted, and
// the next segment is read instead: nothing newer may come first.
func (q *Queue) refillHead() bool {
	for q.spilledLen() > 0 {
		// Within the room memory has left, too: what is there may be the
		// newest batches, up to the bounds.
		maxEntries := min(q.maxEntries/4, q.maxEntries-q.entries)
		maxBytes := min(q.maxBytes/4, q.maxBytes-q.bytes)
		entries, lost, err := q.spill.ReadOldest(max(maxEntries, 1), max(maxBytes, 1))
		if lost > 0 {
			q.drops.add(DropUnreadable, lost, 0, err)
		}
		if len(entries) > 0 {
			q.head = entries
			q.entries += len(entries)
			q.bytes += sizeOf(entries)
			return true
		}
	}
	if len(q.front) > 0 {
		q.head, q.front = q.front, nil
		return true
	}
	if batch, ok := q.popBatch(); ok {
		q.head = batch
		return true
	}
	return false
}

// popBatch takes the oldest batch out of batches.
func (q *Queue) popBatch() ([]loki.Entry, bool) {
	if q.batches.Len() == 0 {
		return nil, false
	}
	// Get blocks only on an empty queue, and only this type takes from it,
	// under q.mu, after checking Len.
	items, err := q.batches.Get(1)
	if err != nil || len(items) == 0 {
		return nil, false
	}
	batch, _ := items[0].([]loki.Entry)
	return batch, true
}

func (q *Queue) over() bool { return q.entries > q.maxEntries || q.bytes > q.maxBytes }

// enforceBounds brings memory back within both bounds. While the spill has
// room, the newest entries in memory go there first, in order (front, then
// the batches, oldest first: all newer than what is spilled), and head,
// which is older than all of it, last, before everything spilled. Only what
// the spill does not take is dropped, oldest first, and counted with the
// reason.
func (q *Queue) enforceBounds() {
	if !q.over() {
		return
	}
	if q.spill == nil {
		q.dropOldest(DropNoSpill, nil)
		return
	}
	for q.over() && !q.spill.Full() {
		var err error
		switch {
		case len(q.front) > 0:
			if err = q.spillOut(q.front, false); err == nil {
				q.front = nil
			}
		case q.batches.Len() > 0:
			batch, _ := q.popBatch()
			if err = q.spillOut(batch, false); err != nil {
				q.front = batch
			}
		case len(q.head) > 0:
			if err = q.spillOut(q.head, q.spill.Len() > 0); err == nil {
				q.head = nil
			}
		default:
			return
		}
		if err != nil {
			q.dropOldest(dropReason(err), err)
			return
		}
	}
	err := q.spill.FullErr()
	q.dropOldest(dropReason(err), err)
}

// spillOut writes entries (taken from memory) to the spill, before
// everything in it when first.
func (q *Queue) spillOut(entries []loki.Entry, first bool) error {
	write := q.spill.Write
	if first {
		write = q.spill.WriteFront
	}
	if err := write(entries); err != nil {
		return err
	}
	q.entries -= len(entries)
	q.bytes -= sizeOf(entries)
	q.drops.Spilled += len(entries)
	return nil
}

// dropOldest drops the oldest entries in memory until both bounds hold:
// head's, then front's, then the batches'; why says what kept them out of
// the spill.
func (q *Queue) dropOldest(why DropReason, err error) {
	for q.over() {
		from := &q.head
		if len(q.head) == 0 {
			if len(q.front) == 0 {
				batch, ok := q.popBatch()
				if !ok {
					return
				}
				q.front = batch
			}
			from = &q.front
		}
		n, bytes := 0, 0
		for len(*from) > 0 && q.over() {
			size := (*from)[0].Size()
			(*from)[0] = loki.Entry{} // release the line
			*from = (*from)[1:]
			q.entries--
			q.bytes -= size
			n++
			bytes += size
		}
		q.drops.add(why, n, bytes, err)
		if len(*from) == 0 {
			*from = nil
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
