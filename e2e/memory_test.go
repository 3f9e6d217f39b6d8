package e2e

import (
	"fmt"
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/internal/scenario"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// 200 000 lines of 512 bytes (about 100 MB) while Loki is down, in every
// flush mode: what the process keeps alive stays within the queue's bound
// (peak RSS ≤ 1.5 × QUEUE_MAX_BYTES + 32 MiB), the lines past it go to the
// spill file, and once Loki is back every one of them is delivered before
// SHUTDOWN. Without a spill file the lines past the bound are dropped, and
// counted exactly. The benchmark's memory rows run the same scenario
// (package scenario).
func TestMemoryBoundAndSpillWhileLokiIsDown(t *testing.T) {
	srv := e2etest.StartLoki(t, lokiserver.Options{HighIngestionLimits: true})
	for _, tt := range scenario.FloodModes() {
		t.Run(fmt.Sprintf("%s, spill %v", tt.Strategy, tt.Spill), func(t *testing.T) {
			plan := scenario.NewFloodPlan(srv, sandbox.Config{ExtensionsDir: e2etest.ExtensionDir(t), FunctionName: e2etest.FunctionName(t)}, tt.Strategy, tt.Spill)
			r, err := scenario.Flood(t.Context(), plan)
			logOutputOnFailure(t, r.Output)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("peak RSS %.1f MiB (bound %d MiB); written %d, in Loki %d, delivered %d, dropped %d, spilled %d",
				float64(r.PeakRSSBytes)/(1<<20), plan.RSSBound()>>20, r.Written, r.InLoki, r.Delivered, r.Dropped, r.Spilled)
			if r.PeakRSSBytes > plan.RSSBound() {
				t.Errorf("peak RSS %d MiB beyond %d MiB: the queue's bound does not bound memory", r.PeakRSSBytes>>20, plan.RSSBound()>>20)
			}
			if r.EmulatorDropped != 0 {
				t.Fatalf("the emulator dropped %d records: the listener did not keep up", r.EmulatorDropped)
			}
			if tt.Spill {
				if r.InLoki != r.Written || r.Dropped != 0 || r.Lost != 0 {
					t.Fatalf("with the spill file, %d of %d lines in Loki, %d dropped, %d lost", r.InLoki, r.Written, r.Dropped, r.Lost)
				}
				return
			}
			if r.Dropped == 0 || r.InLoki != r.Delivered || r.Delivered+r.Dropped != r.Written {
				t.Fatalf("without a spill file: written %d, in Loki %d, delivered %d, dropped %d: the drops are not counted exactly", r.Written, r.InLoki, r.Delivered, r.Dropped)
			}
		})
	}
}
