package lokitest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchRequestID and BenchTraceID are the invocation of TextBatch's lines,
// as Lambda's platform.start gives them (StartBatch): the listener gives
// every line its request and trace IDs, sent as structured metadata.
const (
	BenchRequestID = "8f5e4c3a-1b2d-4e6f-9a7b-0c1d2e3f4a5b"
	BenchTraceID   = "5f35ae120c0fec141ab77a00bc047aa2"
)

// TextBatch renders a Telemetry API batch of n function events the way the
// sandbox emulator (and Lambda, for the text log format) renders them: the
// runtime's "time\trequestId\tLEVEL\tmessage\n" record as a JSON string,
// each line padded to about lineBytes.
func TextBatch(n, lineBytes int) []byte {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		stamp := start.Add(time.Duration(i) * time.Millisecond).Format("2006-01-02T15:04:05.000Z")
		msg := "line " + strconv.Itoa(i) + " of " + BenchRequestID
		if pad := lineBytes - len(msg) - 1; pad > 0 {
			msg += " " + strings.Repeat("x", pad)
		}
		record, _ := json.Marshal(stamp + "\t" + BenchRequestID + "\tINFO\t" + msg + "\n")
		b.WriteString(`{"time":"` + stamp + `","type":"function","record":`)
		b.Write(record)
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.Bytes()
}

// StartBatch is the platform.start of TextBatch's invocation, traced.
func StartBatch() []byte {
	return []byte(`[{"time":"2026-01-02T03:04:05.000Z","type":"platform.start","record":{"requestId":"` + BenchRequestID +
		`","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1-` + BenchTraceID[:8] + "-" + BenchTraceID[8:] + `;Parent=53995c3f42cd8ad8;Sampled=1"}}}]`)
}

// Post hands one batch to a Telemetry API listener's handler, as Lambda's
// POST does, and returns the status it answered.
func Post(h http.Handler, method string, body []byte) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, "/", bytes.NewReader(body)))
	return rec.Code
}

// MustPost is Post that fails the benchmark or test unless the answer is 200.
func MustPost(tb testing.TB, h http.Handler, body []byte) {
	if code := Post(h, http.MethodPost, body); code != http.StatusOK {
		tb.Fatalf("listener answered %d", code)
	}
}

// Mallocs is the process's count of heap allocations so far.
func Mallocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

// ReportPerLine adds ns/line, allocs/line and lines/s for b.N batches of
// lines each; mallocs is the number of allocations made in the timed loop.
func ReportPerLine(b *testing.B, lines int, mallocs uint64) {
	total := float64(b.N) * float64(lines)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/total, "ns/line")
	b.ReportMetric(float64(mallocs)/total, "allocs/line")
	b.ReportMetric(total/b.Elapsed().Seconds(), "lines/s")
}
