package telemetryApi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/filter"
	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/telemetryApi"
)

// batchLines is the size of one Telemetry POST in these benchmarks: the
// subscription's default maxItems, so a busy function's batches look so.
const batchLines = 1000

// textBatch renders a Telemetry API batch of n function events the way
// the sandbox emulator (and Lambda, for the text log format) renders them:
// the runtime's "time\trequestId\tLEVEL\tmessage\n" record as a JSON string,
// each line padded to about lineBytes.
func textBatch(n, lineBytes int) []byte {
	const requestID = benchRequestID
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		stamp := start.Add(time.Duration(i) * time.Millisecond).Format("2006-01-02T15:04:05.000Z")
		msg := "line " + strconv.Itoa(i) + " of " + requestID
		if pad := lineBytes - len(msg) - 1; pad > 0 {
			msg += " " + strings.Repeat("x", pad)
		}
		record, _ := json.Marshal(stamp + "\t" + requestID + "\tINFO\t" + msg + "\n")
		b.WriteString(`{"time":"` + stamp + `","type":"function","record":`)
		b.Write(record)
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.Bytes()
}

// startBatch is the platform.start of the benchmark's invocation, traced.
func startBatch() []byte {
	return []byte(`[{"time":"2026-01-02T03:04:05.000Z","type":"platform.start","record":{"requestId":"` + benchRequestID +
		`","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-` + benchTraceID[:8] + "-" + benchTraceID[8:] + `;Parent=53995c3f42cd8ad8;Sampled=1"}}}]`)
}

// noContentLoki answers every push with 204 after reading it, as Loki does
// on success; it does nothing else, so the benchmark measures the extension.
func noContentLoki(tb testing.TB) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	tb.Cleanup(srv.Close)
	return srv
}

// post hands one batch to the listener's handler, as the Telemetry API's
// POST does, and checks the answer.
func post(tb testing.TB, l *telemetryApi.Listener, body []byte) {
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	rec := httptest.NewRecorder()
	l.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		tb.Fatalf("listener answered %d", rec.Code)
	}
}

// reportPerLine adds ns/line and allocs/line for b.N batches of lines each;
// mallocs is the number of heap allocations made during the timed loop.
func reportPerLine(b *testing.B, lines int, mallocs uint64) {
	total := float64(b.N) * float64(lines)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/total, "ns/line")
	b.ReportMetric(float64(mallocs)/total, "allocs/line")
	b.ReportMetric(total/b.Elapsed().Seconds(), "lines/s")
}

func mallocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

// benchRequestID and benchTraceID are the invocation of the benchmark's
// lines, as Lambda's platform.start gives them (startBatch): the listener
// gives every line its request and trace IDs, sent as structured metadata.
const (
	benchRequestID = "8f5e4c3a-1b2d-4e6f-9a7b-0c1d2e3f4a5b"
	benchTraceID   = "5f35ae120c0fec141ab77a00bc047aa2"
)

// BenchmarkPipeline is the per-line cost end to end: a Telemetry POST of
// 1000 text-format function lines decoded by the listener's handler, queued,
// taken by the dispatcher, grouped, encoded (protobuf + snappy, with
// request_id, trace_id and every context field as structured metadata) and
// pushed over HTTP to a server answering 204. The figures include that server's own work (reading
// the body), which runs in the same process.
func BenchmarkPipeline(b *testing.B) { benchmarkPipeline(b, nil, benchContext) }

// BenchmarkPipelineWithoutContext is BenchmarkPipeline with no context
// fields (LOKI_METADATA_EXCLUDE naming them all): what they cost per line.
func BenchmarkPipelineWithoutContext(b *testing.B) {
	benchmarkPipeline(b, nil, telemetryApi.ContextConfig{})
}

// benchmarkPipeline runs BenchmarkPipeline's loop with the listener
// filtering through f (nil: no filter) and putting context on the lines.
func benchmarkPipeline(b *testing.B, f *filter.Filter, lineContext telemetryApi.ContextConfig) {
	body := textBatch(batchLines, 100)
	srv := noContentLoki(b)
	client, err := loki.New(loki.Config{URL: srv.URL + "/api/prom/push", Labels: map[string]string{"source": "lambda", "function": "bench"}})
	if err != nil {
		b.Fatal(err)
	}
	q := telemetryApi.NewQueue(100_000, 16<<20, nil)
	l := telemetryApi.NewListener(telemetryApi.ListenerConfig{Filter: f, Context: lineContext}, q)
	d := telemetryApi.NewDispatcher(q, client, telemetryApi.DispatcherConfig{})
	post(b, l, startBatch())
	if e := q.Take(1); len(e) != 0 {
		b.Fatalf("platform.start queued a line")
	}
	ctx := context.Background()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	before := mallocs()
	b.ResetTimer()
	for b.Loop() {
		post(b, l, body)
		rep := d.Flush(ctx, telemetryApi.FlushWindow)
		if rep.Delivered != batchLines || rep.Err != nil {
			b.Fatalf("delivered %d of %d: %v", rep.Delivered, batchLines, rep.Err)
		}
	}
	b.StopTimer()
	reportPerLine(b, batchLines, mallocs()-before)
}

// benchContext is every context field on: the benchmark's invocation is the
// sandbox's first, so its lines carry cold_start too.
var benchContext = telemetryApi.ContextConfig{
	Sandbox: []loki.Pair{
		{Name: telemetryApi.MetaLogStream, Value: "2026/01/02/[$LATEST]8f5e4c3a1b2d4e6f9a7b0c1d2e3f4a5b"},
		{Name: telemetryApi.MetaFunctionVersion, Value: "$LATEST"},
		{Name: telemetryApi.MetaRuntime, Value: "python3.12"},
		{Name: telemetryApi.MetaArchitecture, Value: "x86_64"},
	},
	FunctionVersion: "$LATEST", Alias: true, ColdStart: true, Restored: true, Report: true,
}

// BenchmarkListener is the handler alone: decode a batch of 1000 text lines
// into entries and queue them (the queue is emptied between batches).
func BenchmarkListener(b *testing.B) {
	body := textBatch(batchLines, 100)
	q := telemetryApi.NewQueue(100_000, 16<<20, nil)
	l := telemetryApi.NewListener(telemetryApi.ListenerConfig{}, q)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	before := mallocs()
	b.ResetTimer()
	for b.Loop() {
		post(b, l, body)
		if got := q.Take(batchLines); len(got) != batchLines {
			b.Fatalf("queued %d lines", len(got))
		}
	}
	b.StopTimer()
	reportPerLine(b, batchLines, mallocs()-before)
}
