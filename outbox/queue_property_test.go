package outbox

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/outbox/spill"
	"github.com/lambda-loki/grafana-loki-extension/outbox/spill/spilltest"
)

// Every line put in the queue is delivered or counted, whatever happens:
// random puts, takes delivered or failed and requeued, a disk that runs
// out of room (ENOSPC) and gets it back, a spill at its bound, and
// restarts, each a kill (the process gone, its memory with it) followed by
// a new queue in the same directory. At every step
//
//	put + recovered = delivered + dropped + queued
//
// within a process's life; over the whole run every line is delivered, or
// counted dropped, or was in memory at a kill (which nothing can count).
// A line comes out at most once, and within a life in the order it was
// put: what a killed process had read back from its spill is not read
// again by the next.
func TestQueueAndSpillAccountForEveryLine(t *testing.T) {
	var seen propertySeen
	for seed := range uint64(25) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) { seen.add(runQueueProperty(t, seed)) })
	}
	// The runs did meet what they are about.
	if seen.byReason[DropSpillFull] == 0 || seen.byReason[DropSpillError] == 0 || seen.recovered == 0 || seen.delivered == 0 {
		t.Fatalf("the runs never met some of it: %+v", seen)
	}
}

// propertySeen is what the runs met.
type propertySeen struct {
	byReason             [NumDropReasons]int
	recovered, delivered int
}

func (s *propertySeen) add(o propertySeen) {
	for i := range s.byReason {
		s.byReason[i] += o.byReason[i]
	}
	s.recovered += o.recovered
	s.delivered += o.delivered
}

type propertyRun struct {
	t       *testing.T
	rng     *rand.Rand
	dir     string
	disk    *spilltest.Disk
	q       *Queue
	next    int // number of the next line put
	put     int // lines put in this life, and recovered at its start
	out     int // lines delivered in this life
	dropped int // in this life

	seen       propertySeen
	delivered  map[int]int  // line → times delivered over the run
	killed     map[int]bool // lines in memory at a kill
	lastInLife int          // the last line delivered in this life
	totalDrops int
}

func runQueueProperty(t *testing.T, seed uint64) propertySeen {
	r := &propertyRun{
		t: t, rng: rand.New(rand.NewPCG(seed, 21)), dir: t.TempDir(), disk: spilltest.NewDisk(1 << 40),
		delivered: map[int]int{}, killed: map[int]bool{},
	}
	r.disk.ClaimFree(1 << 40)
	r.start()
	for range 400 {
		switch op := r.rng.IntN(20); {
		case op < 9:
			r.putBatch()
		case op < 13:
			r.take(true)
		case op < 16:
			r.take(false)
		case op < 18:
			// The function fills /tmp, or frees it.
			r.disk.SetRoom([]int64{0, 2000, 1 << 40, 1 << 40, 1 << 40}[r.rng.IntN(5)])
		case op < 19:
			r.restart()
		default:
			time.Sleep(2 * time.Millisecond) // past the spill's recheck of the room
		}
		r.check()
	}
	r.disk.SetRoom(1 << 40)
	time.Sleep(2 * time.Millisecond)
	for r.q.Len() > 0 {
		r.take(true)
		r.check()
	}
	r.q.Close()
	r.checkRun()
	r.seen.delivered = len(r.delivered)
	return r.seen
}

func (r *propertyRun) start() {
	sp, err := spill.Open(spill.Config{Dir: r.dir, MaxBytes: 128 << 10, FreeShare: 1, Files: r.disk, RoomRecheck: time.Millisecond})
	if err != nil {
		r.t.Fatal(err)
	}
	r.q = NewQueue(500, 64<<10, sp)
	r.put, r.out, r.dropped, r.lastInLife = sp.Leftovers().Entries, 0, 0, -1
	r.seen.recovered += sp.Leftovers().Entries
	if lo := sp.Leftovers(); lo.Lost != 0 || lo.LostBytes != 0 {
		r.t.Fatalf("a kill between whole writes left something unreadable: %+v", lo)
	}
}

func (r *propertyRun) putBatch() {
	n := 1 + r.rng.IntN(150)
	batch := make([]loki.Entry, n)
	for i := range batch {
		batch[i] = loki.Entry{Time: time.Unix(0, int64(r.next)), Line: strconv.Itoa(r.next) + " " + strings.Repeat("x", r.rng.IntN(300)), RequestID: "req"}
		r.next++
	}
	r.put += n
	r.q.Put(batch)
}

// take takes a push's worth; delivered, or failed and requeued.
func (r *propertyRun) take(deliver bool) {
	batch := r.q.TakeUpTo(1+r.rng.IntN(400), 1+r.rng.IntN(128<<10))
	if !deliver {
		r.q.Requeue(batch)
		return
	}
	for _, e := range batch {
		n, _ := strconv.Atoi(strings.Fields(e.Line)[0])
		if n <= r.lastInLife {
			r.t.Fatalf("line %d came out after line %d in the same life", n, r.lastInLife)
		}
		r.lastInLife = n
		if r.delivered[n] > 0 || r.killed[n] {
			r.t.Fatalf("line %d delivered again (killed with the process: %v)", n, r.killed[n])
		}
		r.delivered[n]++
	}
	r.out += len(batch)
}

// restart kills the process: what its queue holds in memory is gone; what
// it spilled is found by the next.
func (r *propertyRun) restart() {
	r.collectDrops()
	q := r.q
	q.mu.Lock()
	for _, es := range [][]loki.Entry{q.head, q.front} {
		r.kill(es)
	}
	for q.batches.Len() > 0 {
		b, _ := q.popBatch()
		r.kill(b)
	}
	q.mu.Unlock()
	r.start()
}

func (r *propertyRun) kill(es []loki.Entry) {
	for _, e := range es {
		n, _ := strconv.Atoi(strings.Fields(e.Line)[0])
		r.killed[n] = true
	}
}

func (r *propertyRun) collectDrops() {
	d := r.q.TakeDrops()
	sum := 0
	for _, n := range d.ByReason {
		sum += n
	}
	if sum != d.Dropped {
		r.t.Fatalf("drops by reason %v add up to %d, not %d", d.ByReason, sum, d.Dropped)
	}
	r.dropped += d.Dropped
	r.totalDrops += d.Dropped
	for i, n := range d.ByReason {
		r.seen.byReason[i] += n
	}
}

// check holds at every step of a life.
func (r *propertyRun) check() {
	r.t.Helper()
	r.collectDrops()
	if r.put != r.out+r.dropped+r.q.Len() {
		r.t.Fatalf("put and recovered %d ≠ delivered %d + dropped %d + queued %d", r.put, r.out, r.dropped, r.q.Len())
	}
	if r.q.bytes > r.q.maxBytes || r.q.entries > r.q.maxEntries {
		r.t.Fatalf("memory holds %d entries, %d bytes: beyond the bounds", r.q.entries, r.q.bytes)
	}
}

// checkRun holds over the whole run: each line delivered, counted dropped,
// or in memory at a kill.
func (r *propertyRun) checkRun() {
	if got := len(r.delivered) + r.totalDrops + len(r.killed); got != r.next {
		r.t.Fatalf("%d lines put; %d delivered + %d dropped + %d in memory at a kill = %d", r.next, len(r.delivered), r.totalDrops, len(r.killed), got)
	}
}
