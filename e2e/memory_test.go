package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/faultproxy"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// 200 000 lines of 512 bytes (about 100 MB) while Loki is down, in every
// flush mode: what the process keeps alive stays within the queue's bound
// (peak RSS ≤ 1.5 × QUEUE_MAX_BYTES + 32 MiB), the lines past it go to the
// spill file, and once Loki is back every one of them is delivered before
// SHUTDOWN. Without a spill file the lines past the bound are dropped, and
// counted exactly.
func TestMemoryBoundAndSpillWhileLokiIsDown(t *testing.T) {
	const (
		queueMaxBytes = 16 << 20
		rssBound      = queueMaxBytes*3/2 + 32<<20
		downInvokes   = 4
		linesEach     = 50_000
	)
	srv := e2etest.StartLoki(t, lokiserver.Options{HighIngestionLimits: true})
	tests := []struct {
		strategy string
		spill    bool
	}{
		{"end", true},
		{"adaptive", true},
		{"periodic,1000", true},
		{"end", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s, spill %v", tt.strategy, tt.spill), func(t *testing.T) {
			p := proxy(t, faultproxy.Config{Upstream: srv.URL()})
			p.SetFault(faultproxy.Fault{Kind: faultproxy.Down})
			function := e2etest.FunctionName(t)
			env := []string{"FLUSH_STRATEGY=" + tt.strategy, "QUEUE_MAX_BYTES=" + strconv.Itoa(queueMaxBytes),
				"TELEMETRY_MAX_BYTES=1048576", "TELEMETRY_MAX_ITEMS=10000", "FLUSH_TIMEOUT_MS=2000", "LOKI_TIMEOUT_MS=1500", "LOG_LEVEL=debug",
				"OUTAGE_RETRY_MAX_MS=1000"}
			if tt.spill {
				env = append(env, "QUEUE_SPILL_MAX_BYTES=268435456")
			} else {
				env = append(env, "QUEUE_SPILL_MAX_BYTES=0")
			}
			sb := e2etest.StartSandbox(t, sandbox.Config{
				FunctionName: function, Env: append(e2etest.Env(t, p.URL()+"/api/prom/push"), env...),
				// The emulator's own buffer is roomy, so that this test
				// measures the extension's bound, not how fast a loaded
				// 2-core machine decodes 25 MB/s of telemetry.
				FunctionTimeout: 30 * time.Second, TelemetryBufferBytes: 64 << 20,
			})
			written := 0
			for i := range downInvokes {
				res, err := sb.Invoke(t.Context(), sandbox.Function{Lines: linesEach, LineBytes: 512, Duration: 2 * time.Second})
				if err != nil {
					t.Fatalf("invoke %d: %v", i, err)
				}
				written += len(res.Lines)
			}
			p.SetFault(faultproxy.Fault{Kind: faultproxy.Pass})
			// Loki is back: invocations give the background thawed time to
			// deliver what waited.
			for i := 0; i < 20 && stored(t, srv, function) < written; i++ {
				res, err := sb.Invoke(t.Context(), sandbox.Function{Messages: []string{"after", "the outage"}, Duration: time.Second})
				if err != nil {
					t.Fatalf("invoke after the outage: %v", err)
				}
				written += len(res.Lines)
			}
			sd, err := sb.Shutdown(t.Context(), "spindown")
			if err != nil || sd.Killed || sd.ExitCode != 0 {
				t.Fatalf("shutdown %+v %v", sd, err)
			}
			out := sb.ExtensionOutput()
			summary := regexp.MustCompile(`delivered=(\d+) dropped=(\d+)`).FindStringSubmatch(out)
			if summary == nil {
				t.Fatalf("no shutdown summary:\n%.3000s", out)
			}
			delivered, _ := strconv.Atoi(summary[1])
			dropped, _ := strconv.Atoi(summary[2])
			inLoki := stored(t, srv, function)
			t.Logf("peak RSS %.1f MiB (bound %d MiB); written %d, in Loki %d, delivered %d, dropped %d",
				float64(sd.PeakRSSBytes)/(1<<20), rssBound>>20, written, inLoki, delivered, dropped)
			if sd.PeakRSSBytes > rssBound {
				t.Errorf("peak RSS %d MiB beyond %d MiB: the queue's bound does not bound memory", sd.PeakRSSBytes>>20, rssBound>>20)
			}
			if st := sb.Stats(); st.DroppedRecords != 0 {
				t.Fatalf("the emulator dropped %d records: the listener did not keep up", st.DroppedRecords)
			}
			if tt.spill {
				if inLoki != written || dropped != 0 || regexp.MustCompile(`lost=`).MatchString(out) {
					t.Fatalf("with the spill file, %d of %d lines in Loki, %d dropped:\n%.3000s", inLoki, written, dropped, out)
				}
				return
			}
			if dropped == 0 || inLoki != delivered || delivered+dropped != written {
				t.Fatalf("without a spill file: written %d, in Loki %d, delivered %d, dropped %d: the drops are not counted exactly", written, inLoki, delivered, dropped)
			}
		})
	}
}

// stored counts the function's own lines in Loki.
func stored(t *testing.T, srv *lokiserver.Server, function string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	samples, err := srv.Instant(ctx, fmt.Sprintf(`sum(count_over_time({function=%q, type=""}[1h]))`, function), time.Now(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(samples) == 0 {
		return 0
	}
	return int(samples[0].Value)
}
