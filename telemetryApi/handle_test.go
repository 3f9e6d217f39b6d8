package telemetryApi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A batch that spans many invocations (adaptive or periodic mode, or a
// sandbox that was frozen while Lambda buffered) is split at every
// runtimeDone. What the queue keeps must cost about what it counts: a split
// that kept each segment in an array sized for the whole batch made the heap
// hold 656 MB for 395 KB counted.
func TestBatchSpanningManyInvocationsKeepsWhatItCounts(t *testing.T) {
	const batches, events, perInvocation = 40, 1000, 4 // 250 invocations a batch
	q := newSink()
	l := NewListener(ListenerConfig{}, q)
	body := func(b int) string {
		var sb strings.Builder
		sb.WriteByte('[')
		for i := range events {
			if i > 0 {
				sb.WriteByte(',')
			}
			if i%perInvocation == perInvocation-1 {
				fmt.Fprintf(&sb, `{"time":"2024-01-01T00:00:00.000Z","type":"platform.runtimeDone","record":{"requestId":"r%d-%d","status":"success"}}`, b, i)
				continue
			}
			fmt.Fprintf(&sb, `{"time":"2024-01-01T00:00:00.000Z","type":"function","record":"l%d\n"}`, i)
		}
		sb.WriteByte(']')
		return sb.String()
	}
	before := heapInUse()
	for b := range batches {
		if code := post(l, http.MethodPost, body(b)); code != 200 {
			t.Fatalf("status %d", code)
		}
	}
	kept := heapInUse() - before
	counted := q.Bytes()
	t.Logf("queue counts %d bytes for %d lines; the heap keeps %d bytes more", counted, q.Len(), kept)
	if q.Len() != batches*events*3/4 {
		t.Fatalf("queued %d lines", q.Len())
	}
	if kept > 2*int64(counted)+1<<20 {
		t.Fatalf("the heap keeps %d bytes for %d counted: the queue's bound does not bound memory", kept, counted)
	}
	runtime.KeepAlive(q)
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// Records dropped at the end of one invocation are reported after its
// runtimeDone, often only after the thaw: they cannot have held the next
// invocation's runtimeDone, and a function that then computes silently
// for longer than LostAfter must not get its /next early.
func TestDropsOfAnEarlierInvocationDoNotEndTheWait(t *testing.T) {
	const (
		earlier = `[{"time":"2024-01-01T00:00:00.000Z","type":"platform.start","record":{"requestId":"r1"}},
			{"time":"2024-01-01T00:00:00.001Z","type":"platform.runtimeDone","record":{"requestId":"r1","status":"success"}},
			{"time":"2024-01-01T00:00:00.002Z","type":"platform.logsDropped","record":{"droppedBytes":10,"droppedRecords":1,"reason":"slow"}}]`
		start2   = `[{"time":"2024-01-01T00:00:01.000Z","type":"platform.start","record":{"requestId":"r2"}}]`
		dropped2 = `[{"time":"2024-01-01T00:00:01.001Z","type":"platform.logsDropped","record":{"droppedBytes":10,"droppedRecords":1,"reason":"slow"}}]`
	)
	tests := []struct {
		name    string
		before  []string // posted before the wait
		during  []string // posted 10 ms apart once it has begun
		wantErr error
	}{
		{"a drop after the earlier runtimeDone, delivered before the wait", []string{earlier, start2}, nil, context.DeadlineExceeded},
		{"a drop after the earlier runtimeDone, delivered after the thaw", nil, []string{earlier, start2}, context.DeadlineExceeded},
		{"a drop during the invocation waited for", []string{earlier, start2}, []string{dropped2}, ErrRuntimeDoneLost},
		{"the invocation's start dropped too", []string{earlier}, []string{dropped2}, ErrRuntimeDoneLost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewListener(ListenerConfig{LostAfter: 50 * time.Millisecond}, newSink())
			for _, b := range tt.before {
				post(l, http.MethodPost, b)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 400*time.Millisecond)
			defer cancel()
			go func() {
				for _, b := range tt.during {
					time.Sleep(10 * time.Millisecond)
					post(l, http.MethodPost, b)
				}
			}()
			if _, err := l.WaitRuntimeDone(ctx, "r2"); !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// Every entry says which invocation it belongs to, and its trace when the
// function is traced (Loki structured metadata): the record's own requestId
// in JSON format or in a text line that is a JSON object (top level only),
// else the invocation running; none for init lines. Two invocations
// interleaved in one batch (adaptive mode) keep theirs apart.
func TestEntriesCarryTheirInvocation(t *testing.T) {
	const trace1 = `"tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"}`
	batch := `[
	{"time":"2024-01-01T00:00:00.000Z","type":"function","record":"init line\n"},
	{"time":"2024-01-01T00:00:00.001Z","type":"platform.start","record":{"requestId":"r1",` + trace1 + `}},
	{"time":"2024-01-01T00:00:00.002Z","type":"function","record":"text of r1\n"},
	{"time":"2024-01-01T00:00:00.003Z","type":"function","record":{"timestamp":"2024-01-01T00:00:00.003Z","level":"INFO","requestId":"r1","message":"json of r1"}},
	{"time":"2024-01-01T00:00:00.004Z","type":"platform.runtimeDone","record":{"requestId":"r1","status":"success"}},
	{"time":"2024-01-01T00:00:00.005Z","type":"platform.start","record":{"requestId":"r2"}},
	{"time":"2024-01-01T00:00:00.006Z","type":"platform.report","record":{"requestId":"r1","status":"success","metrics":{"durationMs":1}}},
	{"time":"2024-01-01T00:00:00.007Z","type":"function","record":"text of r2\n"},
	{"time":"2024-01-01T00:00:00.008Z","type":"function","record":{"timestamp":"2024-01-01T00:00:00.008Z","level":"INFO","requestId":"r1","message":"late json of r1"}},
	{"time":"2024-01-01T00:00:00.009Z","type":"platform.runtimeDone","record":{"requestId":"r2","status":"success"}},
	{"time":"2024-01-01T00:00:00.010Z","type":"platform.start","record":{"requestId":"r3"}},
	{"time":"2024-01-01T00:00:00.011Z","type":"function","record":"{\"timestamp\":\"2024-01-01T00:00:00.011Z\",\"level\":\"INFO\",\"requestId\":\"r1\",\"message\":\"text json of r1\"}\n"},
	{"time":"2024-01-01T00:00:00.012Z","type":"function","record":"{\"level\":\"INFO\",\"ctx\":{\"requestId\":\"r1\"},\"message\":\"nested id\"}\n"},
	{"time":"2024-01-01T00:00:00.013Z","type":"platform.runtimeDone","record":{"requestId":"r3","status":"success"}}]`
	const wantTrace = "5759e988bd862e3fe1be46a994272793"
	tests := []struct {
		name       string
		concurrent bool
		want       map[string][2]string // line prefix → request ID, trace ID
	}{
		{"one invocation at a time", false, map[string][2]string{
			"init line": {"", ""}, "START RequestId: r1": {"r1", wantTrace}, "text of r1": {"r1", wantTrace},
			`"message":"json of r1"`: {"r1", wantTrace}, "END RequestId: r1": {"r1", wantTrace},
			"START RequestId: r2": {"r2", ""}, "REPORT RequestId: r1": {"r1", wantTrace}, "text of r2": {"r2", ""},
			`"message":"late json of r1"`: {"r1", wantTrace}, "END RequestId: r2": {"r2", ""},
			`"message":"text json of r1"`: {"r1", wantTrace}, `"message":"nested id"`: {"r3", ""},
		}},
		{"Managed Instances: text lines name no invocation unless they are objects that do", true, map[string][2]string{
			"text of r1": {"", ""}, `"message":"json of r1"`: {"r1", wantTrace}, "text of r2": {"", ""},
			`"message":"text json of r1"`: {"r1", wantTrace}, `"message":"nested id"`: {"", ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newSink()
			l := NewListener(ListenerConfig{ShipPlatform: true, Concurrent: tt.concurrent}, q)
			if code := post(l, http.MethodPost, batch); code != 200 {
				t.Fatalf("status %d", code)
			}
			seen := 0
			for _, e := range q.Take(100) {
				for prefix, want := range tt.want {
					if strings.HasPrefix(e.Line, prefix) || strings.Contains(e.Line, prefix) && strings.HasPrefix(prefix, `"message"`) {
						seen++
						if e.RequestID != want[0] || e.TraceID != want[1] {
							t.Errorf("%q: request %q trace %q, want %q %q", e.Line, e.RequestID, e.TraceID, want[0], want[1])
						}
					}
				}
			}
			if seen != len(tt.want) {
				t.Fatalf("found %d of the %d lines", seen, len(tt.want))
			}
		})
	}
}

// Sandboxes restored from one SnapStart snapshot must not share the offset
// drawn before it: a restore draws it again.
func TestRestoreDrawsTheStampOffsetAgain(t *testing.T) {
	l := NewListener(ListenerConfig{}, newSink())
	const restore = `[{"time":"2024-01-01T00:00:00.000Z","type":"platform.restoreStart","record":{}}]`
	changed := false
	for range 20 { // one draw in 900 000 repeats the old offset
		before := l.stamps.salt
		post(l, http.MethodPost, restore)
		if l.stamps.salt != before {
			changed = true
			break
		}
	}
	if !changed {
		t.Fatal("a restore kept the offset drawn before the snapshot")
	}
}

// Clients that send their headers and then stall hold a connection each;
// they must not hold Shutdown past the caller's budget, nor stay open.
func TestStalledClientsDoNotHoldShutdown(t *testing.T) {
	l := NewListener(ListenerConfig{Addr: "127.0.0.1:0", ReadTimeout: 300 * time.Millisecond}, newSink())
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	for range 50 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[")
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = l.Shutdown(ctx)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Shutdown took %s with a 100 ms budget", took)
	}
	// The connections are closed, not left to their clients.
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 512)
		for {
			_, err := c.Read(buf)
			if err == nil {
				continue // an error answer, then the close
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("connection %d still open after Shutdown", i)
			}
			break
		}
	}
}

// The stalled-client bound holds without Shutdown too: ReadTimeout ends a
// request that never completes.
func TestStalledClientIsCutByReadTimeout(t *testing.T) {
	l := NewListener(ListenerConfig{Addr: "127.0.0.1:0", ReadTimeout: 200 * time.Millisecond}, newSink())
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Shutdown(context.Background()) })
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[")
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the stalled request was not cut")
			}
			return
		}
	}
}
