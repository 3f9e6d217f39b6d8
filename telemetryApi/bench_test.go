package telemetryApi_test

import (
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/internal/lokitest"
	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/telemetryApi"
)

// batchLines is the size of one Telemetry POST in these benchmarks: the
// subscription's default maxItems, so a busy function's batches look so.
const batchLines = 1000

// countingSink counts what the listener hands over and keeps nothing, so
// that the benchmark measures the listener alone.
type countingSink struct{ lines int }

func (s *countingSink) Put(entries []loki.Entry) { s.lines += len(entries) }

// BenchmarkListener is the handler alone: decode a batch of 1000 text lines
// into entries and hand them over. The end-to-end figure, with the outbox
// and the Loki client, is BenchmarkPipeline in package lifecycle.
func BenchmarkListener(b *testing.B) {
	body := lokitest.TextBatch(batchLines, 100)
	sink := &countingSink{}
	l := telemetryApi.NewListener(telemetryApi.ListenerConfig{}, sink)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	before := lokitest.Mallocs()
	b.ResetTimer()
	for b.Loop() {
		sink.lines = 0
		lokitest.MustPost(b, l, body)
		if sink.lines != batchLines {
			b.Fatalf("handed over %d lines", sink.lines)
		}
	}
	b.StopTimer()
	lokitest.ReportPerLine(b, batchLines, lokitest.Mallocs()-before)
}
