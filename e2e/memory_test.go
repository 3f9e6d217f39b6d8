package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/internal/scenario"
	"github.com/lambda-loki/grafana-loki-extension/outbox/spill/spilltest"
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
			if err := r.CheckSummary(); err != nil {
				t.Errorf("the shutdown summary does not account for every line: %v", err)
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

// The function fills /tmp while Loki is down and the spill is in use, and
// frees it again: the spill's writes fail with ENOSPC or find no room, the
// lines they could not take are dropped and counted with that reason, the
// spill takes lines again once there is room, and the shutdown summary
// accounts for every line against what Loki holds. The /tmp is a small
// tmpfs, where the machine allows mounting one.
func TestATmpThatFillsMidRun(t *testing.T) {
	// Room enough for the first invocation's spill within the spill's
	// share (a quarter of what is free).
	tmp := spilltest.Tmpfs(t, 128<<20)
	srv := e2etest.StartLoki(t, lokiserver.Options{HighIngestionLimits: true})
	plan := scenario.NewFloodPlan(srv, sandbox.Config{ExtensionsDir: e2etest.ExtensionDir(t), FunctionName: e2etest.FunctionName(t)}, "end", true)
	plan.DownInvokes, plan.LinesEach, plan.SpillDir = 3, 30_000, tmp
	filler := filepath.Join(tmp, "function-cache")
	plan.BeforeDownInvoke = func(i int) error {
		switch i {
		case 1: // the function fills /tmp to the last byte
			return fill(filler)
		case 2: // and frees it
			return os.Remove(filler)
		}
		return nil
	}
	r, err := scenario.Flood(t.Context(), plan)
	logOutputOnFailure(t, r.Output)
	if err != nil {
		t.Fatal(err)
	}
	s := r.Summary
	t.Logf("written %d, in Loki %d, delivered %d, spilled %d, dropped %d %v", r.Written, r.InLoki, s.Delivered, s.Spilled, s.Dropped, s.DroppedBy)
	if r.EmulatorDropped != 0 {
		t.Fatalf("the emulator dropped %d records: the listener did not keep up", r.EmulatorDropped)
	}
	if err := r.CheckSummary(); err != nil {
		t.Errorf("the shutdown summary does not account for every line: %v", err)
	}
	// Whether the disk's ENOSPC or the spill's share of the free space
	// refuses first depends on where the open segment stands when the
	// function fills /tmp (the spill's tests hold each case); either way
	// the lines are counted under the spill's reasons.
	if s.DroppedBy["droppedSpillError"]+s.DroppedBy["droppedSpillFull"] == 0 || s.DroppedBy["droppedNoSpill"] != 0 || s.Spilled == 0 {
		t.Errorf("spilled %d, dropped %v: a full /tmp should have cost lines, counted under the spill's reasons", s.Spilled, s.DroppedBy)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("left in /tmp after SHUTDOWN: %v", entries)
	}
}

// fill writes path until its file system has no room left.
func fill(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return err
		}
	}
}
