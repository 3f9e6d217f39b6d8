package telemetryApi

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/lokitest"
	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// post hands the listener one request, as the Telemetry API would.
func post(l *Listener, method, body string) int { return lokitest.Post(l, method, []byte(body)) }

func TestListenerAnswers(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		body      string
		wantCode  int
		wantLines int
	}{
		{"batch of function lines (docs/lambda-runtime-contract.md#delivery)", http.MethodPost,
			`[{"time":"2022-10-12T00:00:15.064Z","type":"function","record":"a\n"},{"time":"2022-10-12T00:00:15.065Z","type":"function","record":"b\n"}]`, 200, 2},
		{"empty batch", http.MethodPost, `[]`, 200, 0},
		{"only POST", http.MethodGet, ``, 405, 0},
		{"garbage JSON", http.MethodPost, `{{{not json`, 400, 0},
		{"an object instead of an array", http.MethodPost, `{"type":"function","record":"a"}`, 400, 0},
		{"unknown event types are ignored", http.MethodPost, `[{"time":"2022-10-12T00:00:15.064Z","type":"platform.somethingNew","record":{"x":1}},{"time":"2022-10-12T00:00:15.064Z","type":"brandNew","record":"x"}]`, 200, 0},
		{"platform events with odd records are ignored", http.MethodPost, `[{"time":"x","type":"platform.runtimeDone","record":"not an object"},{"time":"x","type":"platform.report","record":7}]`, 200, 0},
		{"extension lines are not shipped unless asked", http.MethodPost, `[{"time":"2022-10-12T00:00:15.064Z","type":"extension","record":"ext\n"}]`, 200, 0},
		{"too large (more than Lambda can send)", http.MethodPost, `["` + strings.Repeat("x", MaxBodyBytes) + `"]`, 413, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newSink()
			l := NewListener(ListenerConfig{}, q)
			if code := post(l, tt.method, tt.body); code != tt.wantCode {
				t.Fatalf("status %d, want %d", code, tt.wantCode)
			}
			if q.Len() != tt.wantLines {
				t.Fatalf("queued %d lines, want %d", q.Len(), tt.wantLines)
			}
			if tt.wantCode >= 400 && l.Stats().Rejected != 1 {
				t.Fatalf("rejected count %d", l.Stats().Rejected)
			}
		})
	}
}

func TestListenerPlatformLinesAndFailures(t *testing.T) {
	batch := `[
	{"time":"2022-10-12T00:00:15.000Z","type":"platform.start","record":{"requestId":"r1","version":"$LATEST"}},
	{"time":"2022-10-12T00:00:15.001Z","type":"function","record":"hello\n"},
	{"time":"2022-10-12T00:00:18.000Z","type":"platform.runtimeDone","record":{"requestId":"r1","status":"timeout","errorType":"Sandbox.Timeout","metrics":{"durationMs":3000}}},
	{"time":"2022-10-12T00:00:18.002Z","type":"platform.report","record":{"requestId":"r1","status":"timeout","metrics":{"durationMs":3000,"billedDurationMs":3000,"memorySizeMB":128,"maxMemoryUsedMB":60}}},
	{"time":"2022-10-12T00:00:18.003Z","type":"extension","record":"ext line\n"}]`
	tests := []struct {
		name     string
		cfg      ListenerConfig
		want     []string
		wantType []loki.StreamType
	}{
		{"default: function lines and the timeout line only", ListenerConfig{},
			[]string{"hello", "Task timed out: RequestId: r1 Status: timeout Error Type: Sandbox.Timeout Duration: 3000.00 ms"},
			[]loki.StreamType{loki.StreamFunction, loki.StreamFunction}},
		{"platform and extension lines on", ListenerConfig{ShipPlatform: true, ShipExtension: true},
			[]string{"START RequestId: r1 Version: $LATEST", "hello",
				"Task timed out: RequestId: r1 Status: timeout Error Type: Sandbox.Timeout Duration: 3000.00 ms", "END RequestId: r1",
				"REPORT RequestId: r1\tDuration: 3000.00 ms\tBilled Duration: 3000 ms\tMemory Size: 128 MB\tMax Memory Used: 60 MB\tStatus: timeout",
				"ext line"},
			[]loki.StreamType{loki.StreamPlatform, loki.StreamFunction, loki.StreamFunction, loki.StreamPlatform, loki.StreamPlatform, loki.StreamExtension}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newSink()
			l := NewListener(tt.cfg, q)
			if code := post(l, http.MethodPost, batch); code != 200 {
				t.Fatalf("status %d", code)
			}
			got := q.Take(100)
			if !slices.Equal(lokitest.Lines(got), tt.want) {
				t.Fatalf("lines:\n%q\nwant\n%q", lokitest.Lines(got), tt.want)
			}
			for i, e := range got {
				if e.Stream != tt.wantType[i] {
					t.Errorf("line %d on stream %v, want %v", i, e.Stream, tt.wantType[i])
				}
			}
		})
	}
}

func TestWaitRuntimeDoneSeesLinesQueuedFirst(t *testing.T) {
	q := newSink()
	l := NewListener(ListenerConfig{}, q)
	got := make(chan int, 1)
	go func() {
		if _, err := l.WaitRuntimeDone(t.Context(), "r1"); err == nil {
			got <- q.Len()
		}
		close(got)
	}()
	time.Sleep(10 * time.Millisecond) // let the waiter block first
	post(l, http.MethodPost, `[{"time":"2022-10-12T00:00:15.001Z","type":"function","record":"one"},
		{"time":"2022-10-12T00:00:15.002Z","type":"platform.runtimeDone","record":{"requestId":"other","status":"success"}},
		{"time":"2022-10-12T00:00:15.003Z","type":"function","record":"two"},
		{"time":"2022-10-12T00:00:15.004Z","type":"platform.runtimeDone","record":{"requestId":"r1","status":"success"}}]`)
	select {
	case n := <-got:
		if n != 2 {
			t.Fatalf("runtimeDone signalled with %d lines queued, want 2", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitRuntimeDone did not return")
	}
}

func TestWaitRuntimeDoneAlreadyReceivedAndDeadline(t *testing.T) {
	l := NewListener(ListenerConfig{}, newSink())
	post(l, http.MethodPost, `[{"time":"x","type":"platform.runtimeDone","record":{"requestId":"early","status":"success"}}]`)
	if rd, err := l.WaitRuntimeDone(t.Context(), "early"); err != nil || rd.Status != "success" {
		t.Fatalf("got %+v %v", rd, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.WaitRuntimeDone(ctx, "never"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline exceeded, got %v", err)
	}
}

// Contract §2.2: when the listener falls behind, Lambda drops records and
// says so with platform.logsDropped; the dropped ones may include the
// runtimeDone the lifecycle waits for. The wait then ends once telemetry has
// gone quiet, instead of at the invocation's (billed) deadline.
func TestWaitRuntimeDoneAfterDroppedRecords(t *testing.T) {
	const (
		dropped = `[{"time":"2022-10-12T00:00:15.064Z","type":"platform.logsDropped","record":{"droppedBytes":2048,"droppedRecords":12,"reason":"slow"}}]`
		done    = `[{"time":"2022-10-12T00:00:15.070Z","type":"platform.runtimeDone","record":{"requestId":"r1","status":"success"}}]`
		line    = `[{"time":"2022-10-12T00:00:15.065Z","type":"function","record":"still logging"}]`
		// doneEarlier ends the previous invocation.
		doneEarlier = `[{"time":"2022-10-12T00:00:15.066Z","type":"platform.runtimeDone","record":{"requestId":"r0","status":"success"}}]`
	)
	tests := []struct {
		name    string
		batches []string // posted 20 ms apart once the wait has begun
		wantErr error
	}{
		{"dropped records, then silence: the runtimeDone is given up", []string{dropped}, ErrRuntimeDoneLost},
		{"dropped records, lines, then the runtimeDone: it is awaited", []string{dropped, line, line, done}, nil},
		{"no drops: the wait lasts until the deadline", []string{line}, context.DeadlineExceeded},
		{"drops before an earlier runtimeDone do not concern this one", []string{dropped, doneEarlier}, context.DeadlineExceeded},
		{"drops and the earlier runtimeDone in one batch, drop last", []string{doneEarlier[:len(doneEarlier)-1] + "," + dropped[1:]}, ErrRuntimeDoneLost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewListener(ListenerConfig{LostAfter: 60 * time.Millisecond}, newSink())
			ctx, cancel := context.WithTimeout(t.Context(), 400*time.Millisecond)
			defer cancel()
			go func() {
				for _, b := range tt.batches {
					time.Sleep(20 * time.Millisecond)
					post(l, http.MethodPost, b)
				}
			}()
			_, err := l.WaitRuntimeDone(ctx, "r1")
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestLogsDroppedIsCounted(t *testing.T) {
	var logged bytes.Buffer
	l := NewListener(ListenerConfig{}, newSink())
	l.cfg.Log.SetOutput(&logged)
	post(l, http.MethodPost, `[{"time":"2022-10-12T00:00:15.064Z","type":"platform.logsDropped","record":{"droppedBytes":2048,"droppedRecords":12,"reason":"Some logs were dropped because the downstream consumer is slower than the logs production rate"}}]`)
	if l.Stats().LambdaDropped != 12 || !strings.Contains(logged.String(), "downstream consumer is slower") {
		t.Fatalf("dropped %d, log %q", l.Stats().LambdaDropped, logged.String())
	}
}

func TestListenerServesOverHTTP(t *testing.T) {
	q := newSink()
	l := NewListener(ListenerConfig{Addr: "127.0.0.1:0"}, q)
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+l.Addr().String()+"/", "application/json", strings.NewReader(`[{"time":"2022-10-12T00:00:15.064Z","type":"function","record":"x"}]`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || q.Len() != 1 || l.LastReceived().IsZero() {
		t.Fatalf("status %d, %d queued", resp.StatusCode, q.Len())
	}
	if err := l.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Post("http://"+l.Addr().String()+"/", "application/json", strings.NewReader(`[]`)); err == nil {
		t.Fatal("listener still answers after Shutdown")
	}
}

// FuzzListener feeds arbitrary bodies to the handler: it must never panic,
// and must answer 200 or a 4xx. The seeds run in every `go test`.
func FuzzListener(f *testing.F) {
	for _, seed := range []string{
		`[{"time":"2022-10-12T00:00:15.064Z","type":"function","record":"a\n"}]`,
		`[{"time":"2022-10-12T00:00:15.064Z","type":"function","record":{"timestamp":"2022-10-12T00:03:50.000Z","level":"INFO","message":"m"}}]`,
		`[{"time":"x","type":"platform.runtimeDone","record":{"requestId":"r","status":"error","errorType":"E","metrics":{"durationMs":1}}}]`,
		`[{"time":"x","type":"platform.report","record":{"requestId":"r","metrics":{"durationMs":"nan"}}}]`,
		`[{"type":"function","record":{"a":{"b":{"c":[1,2,{"d":null}]}}}}]`,
		`[{"type":"platform.logsDropped","record":{"droppedRecords":-1}}]`,
		`[null, 1, "x", {}]`, `[]`, `{}`, ``, "\xff\xfe", `[{"record":"\udc80"}]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		l := NewListener(ListenerConfig{ShipPlatform: true, ShipExtension: true}, newSink())
		if code := lokitest.Post(l, http.MethodPost, body); code != 200 && code != 400 {
			t.Fatalf("status %d for %q", code, body)
		}
	})
}

// Contract §4, SnapStart: the restore events ship nothing and do not
// disturb the batch; platform.restoreStart, whatever its record, calls
// OnRestore so that connections from before the snapshot are dropped.
func TestRestoreEventsCallOnRestore(t *testing.T) {
	tests := []struct {
		name      string
		batch     string
		wantCalls int
		wantLines int
	}{
		{"a restore, then an invocation", `[
			{"time":"2022-10-12T00:00:15.000Z","type":"platform.restoreStart","record":{"functionName":"fn","functionVersion":"$LATEST"}},
			{"time":"2022-10-12T00:00:15.010Z","type":"platform.restoreRuntimeDone","record":{"status":"success"}},
			{"time":"2022-10-12T00:00:15.020Z","type":"platform.restoreReport","record":{"status":"success","metrics":{"durationMs":15.19}}},
			{"time":"2022-10-12T00:00:15.030Z","type":"function","record":"after the restore\n"}]`, 1, 1},
		{"a restoreStart with an odd record", `[{"time":"x","type":"platform.restoreStart","record":"?"}]`, 1, 0},
		{"a failed restore is still a restore", `[{"time":"x","type":"platform.restoreStart","record":{}},{"time":"x","type":"platform.restoreRuntimeDone","record":{"status":"error","errorType":"Runtime.Unknown"}}]`, 1, 0},
		{"no restore, no call", `[{"time":"x","type":"platform.initStart","record":{"initializationType":"snap-start","phase":"snap-start"}}]`, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			q := newSink()
			l := NewListener(ListenerConfig{ShipPlatform: true, OnRestore: func() { calls++ }}, q)
			if code := post(l, http.MethodPost, tt.batch); code != 200 {
				t.Fatalf("status %d", code)
			}
			if calls != tt.wantCalls || q.Len() != tt.wantLines {
				t.Fatalf("OnRestore called %d times, %d lines queued; want %d and %d", calls, q.Len(), tt.wantCalls, tt.wantLines)
			}
		})
	}
}

// Contract §2.3 promises {time, type, record} events; one that breaks the
// shape must not cost the rest of its batch, least of all the runtimeDone.
func TestOddEventsDoNotCostTheBatch(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantCode  int
		wantLines int
		wantDone  bool
		skipped   int64
	}{
		{"a time that is a number", `[{"time":1704067200,"type":"function","record":"a"},
			{"time":"2024-01-01T00:00:00.001Z","type":"function","record":"b"},
			{"time":"2024-01-01T00:00:00.002Z","type":"platform.runtimeDone","record":{"requestId":"r1","status":"success"}}]`, 200, 2, true, 0},
		{"elements that are not events", `[42, "text", null, {"type":7},
			{"time":"2024-01-01T00:00:00.001Z","type":"function","record":"b"},
			{"time":"2024-01-01T00:00:00.002Z","type":"platform.runtimeDone","record":{"requestId":"r1","status":"success"}}]`, 200, 1, true, 4},
		{"a runtimeDone with a field of an odd type still ends the wait", `[{"time":"2024-01-01T00:00:00.002Z","type":"platform.runtimeDone","record":{"requestId":"r1","status":"success","metrics":{"durationMs":"fast","producedBytes":8.5}}}]`, 200, 0, true, 0},
		// Deeper than encoding/json's nesting limit (10 000): that record
		// alone is skipped; the line before it and the runtimeDone after
		// it are kept.
		{"a record nested too deep", `[{"time":"2024-01-01T00:00:00.001Z","type":"function","record":"b"},
			{"time":"2024-01-01T00:00:00.002Z","type":"function","record":{"deep":` + strings.Repeat("[", 10_001) + strings.Repeat("]", 10_001) + `}},
			{"time":"2024-01-01T00:00:00.003Z","type":"platform.runtimeDone","record":{"requestId":"r1","status":"success"}}]`, 200, 1, true, 1},
		{"strings that hold brackets, quotes and escapes", `[{"time":"2024-01-01T00:00:00.001Z","type":"function","record":"a ] , [ \" \\"},
			{"time":"2024-01-01T00:00:00.003Z","type":"platform.runtimeDone","record":{"requestId":"r1","status":"success"}}]`, 200, 1, true, 0},
		{"not an array at all", `{"time":"x"}`, 400, 0, false, 0},
		{"an array never closed", `[{"time":"2024-01-01T00:00:00.001Z","type":"function","record":"b"}`, 400, 0, false, 0},
		{"cut short", `[{"time":"2024-01-01T00:00:00.001Z","type":"function","record":"b"`, 400, 0, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newSink()
			l := NewListener(ListenerConfig{}, q)
			if code := post(l, http.MethodPost, tt.body); code != tt.wantCode {
				t.Fatalf("answered %d, want %d", code, tt.wantCode)
			}
			if q.Len() != tt.wantLines || l.Stats().SkippedEvents != tt.skipped {
				t.Fatalf("%d lines queued, %d events skipped; want %d and %d", q.Len(), l.Stats().SkippedEvents, tt.wantLines, tt.skipped)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			defer cancel()
			if _, err := l.WaitRuntimeDone(ctx, "r1"); (err == nil) != tt.wantDone {
				t.Fatalf("runtimeDone seen: %v, want %v", err == nil, tt.wantDone)
			}
		})
	}
}

// Loki keeps one of several entries with equal stream, time and line, and
// Lambda's times have millisecond precision: lines repeated within a
// millisecond get distinct stamps inside that millisecond.
// A drop reported before a freeze must not end the next invocation's wait
// at once: quiet counts from the wait's start at the earliest.
func TestWaitRuntimeDoneQuietCountsFromTheWait(t *testing.T) {
	l := NewListener(ListenerConfig{LostAfter: 60 * time.Millisecond}, newSink())
	post(l, http.MethodPost, `[{"time":"2024-01-01T00:00:00.001Z","type":"platform.logsDropped","record":{"droppedBytes":1,"droppedRecords":1,"reason":"slow"}}]`)
	time.Sleep(150 * time.Millisecond) // frozen between invocations
	go func() {
		time.Sleep(30 * time.Millisecond)
		post(l, http.MethodPost, `[{"time":"2024-01-01T00:00:01.000Z","type":"platform.runtimeDone","record":{"requestId":"r2","status":"success"}}]`)
	}()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if _, err := l.WaitRuntimeDone(ctx, "r2"); err != nil {
		t.Fatalf("the wait gave up: %v", err)
	}
}

// Each sandbox moves Lambda's millisecond times by its own offset inside the
// millisecond, so that sandboxes writing the same line in the same
// millisecond to the same stream keep both copies; finer times are kept.
func TestStamperSalt(t *testing.T) {
	ms := time.Date(2024, 1, 1, 0, 0, 0, 5_000_000, time.UTC)
	s := &stamper{salt: 500 * time.Microsecond}
	if got := s.next(loki.StreamFunction, ms); !got.Equal(ms.Add(500 * time.Microsecond)) {
		t.Errorf("millisecond time stamped %s", got.Format(time.RFC3339Nano))
	}
	fine := ms.Add(time.Second + 1234)
	if got := s.next(loki.StreamFunction, fine); !got.Equal(fine) {
		t.Errorf("finer time stamped %s", got.Format(time.RFC3339Nano))
	}
	for range 1000 {
		if salt := newStamper().salt; salt < 0 || salt >= 900*time.Microsecond {
			t.Fatalf("salt %s", salt)
		}
	}
}

func TestStamperKeepsRepeatsApart(t *testing.T) {
	ms := time.Date(2024, 1, 1, 0, 0, 0, 5_000_000, time.UTC)
	tests := []struct {
		name   string
		stream loki.StreamType
		in     time.Time
		want   time.Time
	}{
		{"first", loki.StreamFunction, ms, ms},
		{"same millisecond again", loki.StreamFunction, ms, ms.Add(1)},
		{"and again", loki.StreamFunction, ms, ms.Add(2)},
		{"another stream has its own clock", loki.StreamPlatform, ms, ms},
		{"a later millisecond as it is", loki.StreamFunction, ms.Add(time.Millisecond), ms.Add(time.Millisecond)},
		{"an older millisecond as it is", loki.StreamFunction, ms, ms},
	}
	var s stamper
	for _, tt := range tests {
		if got := s.next(tt.stream, tt.in); !got.Equal(tt.want) {
			t.Errorf("%s: %s, want %s", tt.name, got.Format(time.RFC3339Nano), tt.want.Format(time.RFC3339Nano))
		}
	}
}
