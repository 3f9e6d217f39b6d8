package lifecycle_test

import (
	"context"
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/filter"
	"github.com/lambda-loki/grafana-loki-extension/internal/fakeloki"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokitest"
	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/outbox"
	"github.com/lambda-loki/grafana-loki-extension/telemetryApi"
)

// batchLines is the size of one Telemetry POST in these benchmarks: the
// subscription's default maxItems, so a busy function's batches look so.
const batchLines = 1000

// BenchmarkPipeline is the per-line cost end to end, wired as the lifecycle
// wires it: a Telemetry POST of 1000 text-format function lines decoded by
// the listener's handler, queued in the outbox, taken by the dispatcher,
// grouped, encoded (protobuf + snappy, with request_id, trace_id and every
// context field as structured metadata) and pushed over HTTP to a server
// answering 204. The figures include that server's own work (reading the
// body), which runs in the same process.
func BenchmarkPipeline(b *testing.B) { benchmarkPipeline(b, nil, benchContext) }

// BenchmarkPipelineWithoutContext is BenchmarkPipeline with no context
// fields (LOKI_METADATA_EXCLUDE naming them all): what they cost per line.
func BenchmarkPipelineWithoutContext(b *testing.B) {
	benchmarkPipeline(b, nil, telemetryApi.ContextConfig{})
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

// benchmarkPipeline runs BenchmarkPipeline's loop with the listener
// filtering through f (nil: no filter) and putting context on the lines.
func benchmarkPipeline(b *testing.B, f *filter.Filter, lineContext telemetryApi.ContextConfig) {
	body := lokitest.TextBatch(batchLines, 100)
	srv := fakeloki.Start(b, &fakeloki.Loki{Discard: true})
	client, err := loki.New(loki.Config{URL: srv.URL + "/api/prom/push", Labels: map[string]string{"source": "lambda", "function": "bench"}})
	if err != nil {
		b.Fatal(err)
	}
	q := outbox.NewQueue(100_000, 16<<20, nil)
	l := telemetryApi.NewListener(telemetryApi.ListenerConfig{Filter: f, Context: lineContext}, q)
	d := outbox.NewDispatcher(q, client, outbox.DispatcherConfig{})
	lokitest.MustPost(b, l, lokitest.StartBatch())
	if q.Len() != 0 {
		b.Fatalf("platform.start queued a line")
	}
	ctx := context.Background()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	before := lokitest.Mallocs()
	b.ResetTimer()
	for b.Loop() {
		lokitest.MustPost(b, l, body)
		rep := d.Push(ctx, outbox.BeforeNext)
		if rep.Delivered != batchLines || rep.Err != nil {
			b.Fatalf("delivered %d of %d: %v", rep.Delivered, batchLines, rep.Err)
		}
	}
	b.StopTimer()
	lokitest.ReportPerLine(b, batchLines, lokitest.Mallocs()-before)
}
