package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/internal/scenario"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// Sandboxes of one function share the tenant's and the stream's limits: a
// few of them at once against a Loki whose limits they exceed get 429s,
// and still every line arrives, once, and no invocation is held for
// Loki's limiter (a 429 ends the window's push at once). The bound on the
// time after runtimeDone is loose, to tell "one round trip" (tens of ms)
// from retrying inside the window (up to FLUSH_TIMEOUT_MS, 2 s); the
// benchmark's fleet row runs the same scenario with 20 sandboxes against
// Loki's default limits (package scenario).
func TestFleetSharesLokisRateLimit(t *testing.T) {
	srv := e2etest.StartLoki(t, lokiserver.Options{Limits: "\n  ingestion_rate_mb: 1\n  ingestion_burst_size_mb: 1" +
		"\n  per_stream_rate_limit: 1MB\n  per_stream_rate_limit_burst: 1MB"})
	plan := scenario.NewFleetPlan(srv, sandbox.Config{ExtensionsDir: e2etest.ExtensionDir(t), FunctionName: e2etest.FunctionName(t)}, 4)
	plan.BurstInvokes, plan.Outage = 10, 0
	r, err := scenario.Fleet(t.Context(), plan)
	logOutputOnFailure(t, r.Output)
	if err != nil {
		t.Fatal(err)
	}
	burst := slices.Sorted(slices.Values(r.Burst))
	t.Logf("%d invocations, 429 %d times; time after runtimeDone median %s, max %s; %s",
		len(burst), r.RateLimited, burst[len(burst)/2], burst[len(burst)-1], r.Delivery)
	if r.RateLimited == 0 {
		t.Fatal("Loki never answered 429: the limit was not exercised")
	}
	if !r.Delivery.Complete() {
		t.Fatalf("delivery: %s", r.Delivery)
	}
	if worst := burst[len(burst)-1]; worst > 700*time.Millisecond {
		t.Errorf("an invocation spent %s after its runtime: it was held for Loki's rate limit", worst)
	}
}

// After an outage, the SHUTDOWN drain pushes the backlog (memory and the
// spill file) with several requests in flight, and every line of it is in
// Loki by the end, once.
func TestDrainDeliversTheBacklogWhenLokiIsBackAtShutdown(t *testing.T) {
	srv := e2etest.StartLoki(t, lokiserver.Options{HighIngestionLimits: true})
	plan := scenario.NewFloodPlan(srv, sandbox.Config{ExtensionsDir: e2etest.ExtensionDir(t), FunctionName: e2etest.FunctionName(t)}, "end", true)
	plan.DownInvokes, plan.LinesEach, plan.MaxRecoveryInvokes = 1, 20_000, 0
	r, err := scenario.Flood(t.Context(), plan)
	logOutputOnFailure(t, r.Output)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("written %d, in Loki %d, drained in %s", r.Written, r.InLoki, r.ShutdownTook)
	if r.InLoki != r.Written || r.Lost != 0 || r.Dropped != 0 {
		t.Fatalf("%d of %d lines in Loki after the drain, %d lost, %d dropped", r.InLoki, r.Written, r.Lost, r.Dropped)
	}
}
