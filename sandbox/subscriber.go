package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/wait"
)

// subscriber buffers one extension's events and delivers them in batches,
// one batch in flight, retrying failed deliveries with backoff.
type subscriber struct {
	sandbox  *Sandbox
	name     string
	schema   string
	types    map[string]bool
	url      string
	maxItems int
	maxBytes int
	timeout  time.Duration
	limit    int

	mu           sync.Mutex
	queue        [][]byte // encoded events
	queuedBytes  int
	firstAt      time.Time // when the oldest queued event arrived
	paused       bool
	flushNow     bool
	inFlight     bool
	closed       bool
	dropRecords  int64
	dropBytes    int64
	wake         chan struct{}
	done         chan struct{}
	delivered    atomic.Int64
	batches      atomic.Int64
	retries      atomic.Int64
	droppedTotal atomic.Int64
	droppedNotes atomic.Int64
}

func (sub *subscriber) add(ev event) {
	enc := ev.encode(sub.schema)
	sub.mu.Lock()
	if drop := sub.sandbox.cfg.DropEvent; drop != nil && drop(ev.typ) {
		sub.dropRecords++
		sub.dropBytes += int64(len(enc))
		sub.droppedTotal.Add(1)
		sub.noteDrops()
		sub.mu.Unlock()
		sub.signal()
		return
	}
	if sub.queuedBytes+len(enc) > sub.limit {
		sub.dropRecords++
		sub.dropBytes += int64(len(enc))
		sub.droppedTotal.Add(1)
		sub.mu.Unlock()
		return
	}
	sub.noteDrops()
	sub.push(enc)
	sub.mu.Unlock()
	sub.signal()
}

// noteDrops queues a platform.logsDropped event for the records dropped
// since the last one, as Lambda does once there is room again
// (docs/lambda-runtime-contract.md#delivery);
// sub.mu must be held.
func (sub *subscriber) noteDrops() {
	if sub.dropRecords == 0 {
		return
	}
	note, _ := json.Marshal(map[string]any{"droppedRecords": sub.dropRecords, "droppedBytes": sub.dropBytes,
		"reason": "Some logs were dropped because the downstream consumer is slower than the logs production rate"})
	sub.push(event{category: "platform", time: time.Now(), typ: "platform.logsDropped", record: note}.encode(sub.schema))
	sub.dropRecords, sub.dropBytes = 0, 0
	sub.droppedNotes.Add(1)
}

// push appends an encoded event; sub.mu must be held.
func (sub *subscriber) push(enc []byte) {
	if len(sub.queue) == 0 {
		sub.firstAt = time.Now()
	}
	sub.queue = append(sub.queue, enc)
	sub.queuedBytes += len(enc)
}

func (sub *subscriber) signal() {
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

func (sub *subscriber) pause(p bool) {
	sub.mu.Lock()
	sub.paused = p
	sub.mu.Unlock()
	sub.signal()
}

// flush asks for everything queued to go out now, and waits until it has,
// at most until ctx ends.
func (sub *subscriber) flush(ctx context.Context) {
	sub.mu.Lock()
	sub.flushNow = true
	sub.mu.Unlock()
	sub.signal()
	defer func() {
		sub.mu.Lock()
		sub.flushNow = false
		sub.mu.Unlock()
	}()
	for {
		sub.mu.Lock()
		empty := len(sub.queue) == 0 && !sub.inFlight
		sub.mu.Unlock()
		if empty || !wait.Sleep(ctx, 2*time.Millisecond) {
			return
		}
	}
}

func (sub *subscriber) close() {
	sub.mu.Lock()
	if !sub.closed {
		sub.closed = true
		close(sub.done)
	}
	sub.mu.Unlock()
}

// run cuts batches at maxItems, maxBytes or timeout after the first event,
// and POSTs them, one at a time.
func (sub *subscriber) run() {
	client := &http.Client{Timeout: 10 * time.Second}
	for {
		batch := sub.nextBatch()
		if batch == nil {
			return
		}
		body := make([]byte, 0, 2+len(batch)*64)
		body = append(body, '[')
		for i, enc := range batch {
			if i > 0 {
				body = append(body, ',')
			}
			body = append(body, enc...)
		}
		body = append(body, ']')
		backoff := 20 * time.Millisecond
		for !sub.send(client, body) {
			sub.retries.Add(1)
			select {
			case <-sub.done:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			sub.waitUnpaused()
		}
		sub.delivered.Add(int64(len(batch)))
		sub.batches.Add(1)
		sub.mu.Lock()
		sub.inFlight = false
		sub.mu.Unlock()
	}
}

// nextBatch waits until a batch is due and takes it; nil when closed.
func (sub *subscriber) nextBatch() [][]byte {
	for {
		sub.mu.Lock()
		if sub.closed {
			sub.mu.Unlock()
			return nil
		}
		var wait time.Duration = time.Hour
		if !sub.paused && len(sub.queue) > 0 {
			due := sub.flushNow || len(sub.queue) >= sub.maxItems || sub.queuedBytes >= sub.maxBytes
			if remaining := sub.timeout - time.Since(sub.firstAt); due || remaining <= 0 {
				n, size := 0, 0
				for n < len(sub.queue) && n < sub.maxItems && (n == 0 || size+len(sub.queue[n]) <= sub.maxBytes) {
					size += len(sub.queue[n])
					n++
				}
				batch := sub.queue[:n:n]
				sub.queue = sub.queue[n:]
				sub.queuedBytes -= size
				sub.firstAt = time.Now()
				sub.inFlight = true
				// The batch taken makes room: report what overflowed meanwhile,
				// even if nothing else is logged afterwards.
				sub.noteDrops()
				sub.mu.Unlock()
				return batch
			} else {
				wait = remaining
			}
		}
		sub.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-sub.wake:
		case <-t.C:
		case <-sub.done:
		}
		t.Stop()
	}
}

func (sub *subscriber) waitUnpaused() {
	for {
		sub.mu.Lock()
		paused, closed := sub.paused, sub.closed
		sub.mu.Unlock()
		if !paused || closed {
			return
		}
		select {
		case <-sub.wake:
		case <-sub.done:
			return
		}
	}
}

func (sub *subscriber) send(client *http.Client, body []byte) bool {
	req, err := http.NewRequest(http.MethodPost, sub.url, bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode < 300
}

// TelemetryStats counts the Telemetry API's deliveries over all subscribers.
type TelemetryStats struct {
	// Events and Batches delivered (2xx), and failed deliveries retried.
	Events, Batches, Retries int64
	// DroppedRecords overflowed a subscriber's buffer; LogsDroppedEvents is
	// how many platform.logsDropped events reported them.
	DroppedRecords, LogsDroppedEvents int64
}

func (st TelemetryStats) plus(o TelemetryStats) TelemetryStats {
	return TelemetryStats{
		Events: st.Events + o.Events, Batches: st.Batches + o.Batches, Retries: st.Retries + o.Retries,
		DroppedRecords: st.DroppedRecords + o.DroppedRecords, LogsDroppedEvents: st.LogsDroppedEvents + o.LogsDroppedEvents,
	}
}

func (sub *subscriber) stats() TelemetryStats {
	return TelemetryStats{
		Events: sub.delivered.Load(), Batches: sub.batches.Load(), Retries: sub.retries.Load(),
		DroppedRecords: sub.droppedTotal.Load(), LogsDroppedEvents: sub.droppedNotes.Load(),
	}
}
