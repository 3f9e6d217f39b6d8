// Package scenario drives the scenarios of Loki going away that
// the end-to-end tests check (e2e/outage_test.go, e2e/memory_test.go) and
// the benchmark measures (cmd/benchmark): the extension in the sandbox
// emulator, pushing through a fault proxy to a real Loki. It returns what
// happened and judges nothing: the tests hold loose bounds that tell right
// from wrong on a loaded machine, the benchmark reports the figures
// against the project's targets.
package scenario

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/delivery"
	"github.com/lambda-loki/grafana-loki-extension/internal/faultproxy"
	"github.com/lambda-loki/grafana-loki-extension/internal/freeport"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/internal/wait"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// The lines the extension logs once when Loki goes away and once when it
// is back.
const (
	BeganLine = "Loki is unavailable"
	EndedLine = "Loki is back"
)

// Plan is an outage: invocations Gap apart (frozen in between), with Loki
// away, as Fault says, for those numbered FirstFailed to LastFailed
// (counting from 0) and back after.
type Plan struct {
	// Loki is the real Loki behind the fault proxy.
	Loki *lokiserver.Server
	// Sandbox is the emulator's configuration: at least ExtensionsDir and
	// FunctionName. Run adds the listener's port, AWS_SAM_LOCAL and
	// LOKI_URL (the proxy's) in front of its Env.
	Sandbox sandbox.Config
	// Fault is what Loki does while away.
	Fault faultproxy.Fault

	Invokes, FirstFailed, LastFailed int
	Gap                              time.Duration
	Fn                               sandbox.Function
}

// NewPlan returns the outage scenario: 30 invocations × 20 lines, 200 ms
// apart, Loki away for invocations 3 to 22 (counting from 1).
func NewPlan(srv *lokiserver.Server, cfg sandbox.Config, fault faultproxy.Fault) Plan {
	return Plan{Loki: srv, Sandbox: cfg, Fault: fault, Invokes: 30, FirstFailed: 2, LastFailed: 21,
		Gap: 200 * time.Millisecond, Fn: sandbox.Function{Lines: 20}}
}

// Result is what an outage run did.
type Result struct {
	Function string
	Start    time.Time
	Invokes  []sandbox.InvokeResult
	// Lines are every line the function wrote.
	Lines    []sandbox.Line
	Shutdown sandbox.ShutdownResult
	// Output is the extension's own log.
	Output string
	// Requests are the pushes the proxy saw, with their times and fates.
	Requests []faultproxy.Request
	// Delivery compares Lines with what Loki holds after SHUTDOWN.
	Delivery delivery.Delivery
	// Summary is the extension's shutdown summary.
	Summary Summary

	firstFailed, lastFailed int
}

// Run starts a fault proxy in front of p.Loki and the emulator with the
// extension pushing through it, runs the invocations, shuts down and
// compares what Loki holds with what was written. An error means the run
// itself broke (an invocation held past its deadline, an extension killed
// at SHUTDOWN); the Result holds what was seen until then, the output
// included.
func Run(ctx context.Context, p Plan) (r Result, err error) {
	r = Result{Function: p.Sandbox.FunctionName, firstFailed: p.FirstFailed, lastFailed: p.LastFailed}
	proxy, err := faultproxy.Start(faultproxy.Config{Upstream: p.Loki.URL()})
	if err != nil {
		return r, err
	}
	defer proxy.Close()
	cfg := p.Sandbox
	if cfg.Env, err = env(proxy.URL()+"/api/prom/push", cfg.Env...); err != nil {
		return r, err
	}
	r.Start = time.Now()
	sb, err := sandbox.Start(ctx, cfg)
	if err != nil {
		return r, fmt.Errorf("starting the sandbox: %w", err)
	}
	defer sb.Close()
	defer func() { r.Output = sb.ExtensionOutput() }()
	for i := range p.Invokes {
		if i > 0 && !wait.Sleep(ctx, p.Gap) { // frozen: SIGSTOPped, no telemetry delivered
			return r, ctx.Err()
		}
		if i >= p.FirstFailed && i <= p.LastFailed {
			proxy.SetFault(p.Fault)
		} else {
			proxy.SetFault(faultproxy.Fault{Kind: faultproxy.Pass})
		}
		res, err := sb.Invoke(ctx, p.Fn)
		if err != nil {
			return r, fmt.Errorf("invocation %d: %w", i+1, err)
		}
		if res.HeldPastDeadline {
			return r, fmt.Errorf("invocation %d: the extension held the sandbox past the deadline", i+1)
		}
		r.Invokes = append(r.Invokes, res)
		r.Lines = append(r.Lines, res.Lines...)
	}
	if r.Shutdown, err = Shutdown(ctx, sb); err != nil {
		return r, err
	}
	r.Requests = proxy.Requests()
	if r.Summary, err = ParseSummary(sb.ExtensionOutput()); err != nil {
		return r, err
	}
	r.Delivery, err = delivery.Check(ctx, p.Loki, r.Function, r.Lines, r.Start)
	return r, err
}

// CheckSummary holds the shutdown summary to the invariant and to what
// Loki holds (Summary.Check).
func (r Result) CheckSummary() error {
	return r.Summary.Check(len(r.Lines), r.Delivery.Delivered+r.Delivery.Unexpected)
}

// FirstWindow is the time after runtimeDone of the first invocation with
// Loki away: the one that finds out, and may spend its window on Loki.
func (r Result) FirstWindow() time.Duration { return r.Invokes[r.firstFailed].PostRuntime }

// During is the time after runtimeDone of every later invocation while Loki
// is away, which the outage should cost nothing.
func (r Result) During() []time.Duration {
	var ds []time.Duration
	for _, inv := range r.Invokes[r.firstFailed+1 : r.lastFailed+1] {
		ds = append(ds, inv.PostRuntime)
	}
	return ds
}

// Attempts counts the requests made in the background while Loki was away:
// after the first failing invocation's /next and before the last one's.
// The outage's backoff (1 s, doubling) allows a handful in the seconds an
// outage of this plan lasts; retries at a push's own pace would be many.
func (r Result) Attempts() int {
	from, to := r.Invokes[r.firstFailed].Next, r.Invokes[r.lastFailed].Next
	n := 0
	for _, req := range r.Requests {
		if req.At.After(from) && req.At.Before(to) {
			n++
		}
	}
	return n
}

// Logged counts the extension's lines saying Loki went away and came back.
func (r Result) Logged() (began, ended int) {
	return strings.Count(r.Output, BeganLine), strings.Count(r.Output, EndedLine)
}

// tookField is logrus's took=1.5s, quoted when the unit is µs.
var tookField = regexp.MustCompile(`\btook="?([^"\s]+)`)

// FailedPushTook is how long the flush that found Loki away took by the
// extension's own account (the took= of its "Loki is unavailable" line):
// FirstWindow without the wait for runtimeDone. False when it is not logged.
func (r Result) FailedPushTook() (time.Duration, bool) {
	for line := range strings.Lines(r.Output) {
		if !strings.Contains(line, BeganLine) {
			continue
		}
		if m := tookField.FindStringSubmatch(line); m != nil {
			d, err := time.ParseDuration(m[1])
			return d, err == nil
		}
	}
	return 0, false
}

// PausesAfterRefusal returns, for every request Loki refused ("failed": the
// proxy's Status fault, a 429 say), the time until the next request. With a
// Retry-After none should be shorter than it asked.
func PausesAfterRefusal(requests []faultproxy.Request) []time.Duration {
	var pauses []time.Duration
	for i, r := range requests {
		if r.Outcome == "failed" && i+1 < len(requests) {
			pauses = append(pauses, requests[i+1].At.Sub(r.At))
		}
	}
	return pauses
}

// Refused counts the requests Loki refused.
func Refused(requests []faultproxy.Request) int {
	n := 0
	for _, r := range requests {
		if r.Outcome == "failed" {
			n++
		}
	}
	return n
}

// FloodPlan is the memory scenario: LinesEach lines of 512 bytes
// in each of DownInvokes invocations while Loki is down, in one flush mode,
// with or without the spill file; then Loki is back, and invocations give
// the background thawed time to deliver what waited, until Loki holds
// every line or MaxRecoveryInvokes have run; then SHUTDOWN. With
// MaxRecoveryInvokes 0 Loki comes back at SHUTDOWN, and the drain pushes
// everything.
type FloodPlan struct {
	Loki *lokiserver.Server
	// Sandbox as in Plan: ExtensionsDir and FunctionName at least.
	Sandbox sandbox.Config
	// Strategy is FLUSH_STRATEGY.
	Strategy string
	// Spill gives the spill file room for every line; false turns it off
	// (QUEUE_SPILL_MAX_BYTES=0).
	Spill                                      bool
	QueueMaxBytes                              int
	DownInvokes, LinesEach, MaxRecoveryInvokes int
	// SpillDir, when set, is QUEUE_SPILL_DIR.
	SpillDir string
	// BeforeDownInvoke, when set, runs before each invocation with Loki
	// down (numbered from 0): the function filling /tmp, say.
	BeforeDownInvoke func(i int) error
}

// FloodMode is a flush mode the flood runs in, with or without the spill
// file.
type FloodMode struct {
	Strategy string // FLUSH_STRATEGY
	Spill    bool
}

// FloodModes are the modes whose memory bound is measured: every flush
// mode with the spill file, and end mode without it, where the oldest lines
// are dropped and must be counted.
func FloodModes() []FloodMode {
	return []FloodMode{{"end", true}, {"adaptive", true}, {"periodic,1000", true}, {"end", false}}
}

// NewFloodPlan returns the flood, 4 × 50 000 lines of 512 bytes
// (about 100 MB) with QUEUE_MAX_BYTES 16 MiB, in one flush mode.
func NewFloodPlan(srv *lokiserver.Server, cfg sandbox.Config, strategy string, spill bool) FloodPlan {
	return FloodPlan{Loki: srv, Sandbox: cfg, Strategy: strategy, Spill: spill, QueueMaxBytes: 16 << 20,
		DownInvokes: 4, LinesEach: 50_000, MaxRecoveryInvokes: 20}
}

// RSSBound is what "bounded by the queue's limit" means: the queue holds
// QUEUE_MAX_BYTES and the dispatcher up to one take of it outside the
// queue, so half as much again, plus 32 MiB for the runtime, the code and
// the buffers of one telemetry batch and one push.
func (p FloodPlan) RSSBound() int64 { return int64(p.QueueMaxBytes)*3/2 + 32<<20 }

// FloodResult is what a flood run did. The counts of the extension's
// shutdown summary are its own; Written and InLoki are the emulator's and
// Loki's.
type FloodResult struct {
	Function        string
	Written, InLoki int
	// Delivered, Dropped, Spilled and Lost are the shutdown summary's.
	Delivered, Dropped, Spilled, Lost int
	// Summary is all of the shutdown summary.
	Summary      Summary
	PeakRSSBytes int64
	// ShutdownTook is from SHUTDOWN to the extension's exit: with no
	// recovery invocations (MaxRecoveryInvokes 0) it is the drain of
	// everything that waited.
	ShutdownTook time.Duration
	// EmulatorDropped are records the emulator's Telemetry API dropped
	// because the listener did not keep up.
	EmulatorDropped int64
	Output          string
}

// Flood runs p. An error means the run itself broke, or the extension
// wrote no shutdown summary.
func Flood(ctx context.Context, p FloodPlan) (r FloodResult, err error) {
	r = FloodResult{Function: p.Sandbox.FunctionName}
	proxy, err := faultproxy.Start(faultproxy.Config{Upstream: p.Loki.URL()})
	if err != nil {
		return r, err
	}
	defer proxy.Close()
	proxy.SetFault(faultproxy.Fault{Kind: faultproxy.Down})
	spillMax := "0"
	if p.Spill {
		// Room for all of it: 200 000 lines of 512 bytes take about 110 MB
		// there, within a quarter of a /tmp with half a gigabyte free.
		spillMax = strconv.Itoa(256 << 20)
	}
	cfg := p.Sandbox
	extra := []string{"FLUSH_STRATEGY=" + p.Strategy, "QUEUE_MAX_BYTES=" + strconv.Itoa(p.QueueMaxBytes), "QUEUE_SPILL_MAX_BYTES=" + spillMax,
		// The largest subscription buffering, so that the listener takes
		// 25 MB/s in few batches.
		"TELEMETRY_MAX_BYTES=1048576", "TELEMETRY_MAX_ITEMS=10000",
		"FLUSH_TIMEOUT_MS=2000", "LOKI_TIMEOUT_MS=1500", "LOG_LEVEL=debug",
		// Attempts at least every second, so that what waited goes out
		// within the few seconds Loki is back before SHUTDOWN.
		"OUTAGE_RETRY_MAX_MS=1000"}
	if p.SpillDir != "" {
		extra = append(extra, "QUEUE_SPILL_DIR="+p.SpillDir)
	}
	if cfg.Env, err = env(proxy.URL()+"/api/prom/push", append(extra, cfg.Env...)...); err != nil {
		return r, err
	}
	// The emulator's own buffer is roomy, so that this measures the
	// extension's bound, not how fast a loaded 2-core machine decodes
	// 25 MB/s of telemetry.
	cfg.FunctionTimeout, cfg.TelemetryBufferBytes = 30*time.Second, 64<<20
	sb, err := sandbox.Start(ctx, cfg)
	if err != nil {
		return r, fmt.Errorf("starting the sandbox: %w", err)
	}
	defer sb.Close()
	defer func() { r.Output = sb.ExtensionOutput() }()
	for i := range p.DownInvokes {
		if p.BeforeDownInvoke != nil {
			if err := p.BeforeDownInvoke(i); err != nil {
				return r, err
			}
		}
		res, err := sb.Invoke(ctx, sandbox.Function{Lines: p.LinesEach, LineBytes: FloodLineBytes, Duration: 2 * time.Second})
		if err != nil {
			return r, fmt.Errorf("invocation %d with Loki down: %w", i+1, err)
		}
		r.Written += len(res.Lines)
	}
	proxy.SetFault(faultproxy.Fault{Kind: faultproxy.Pass})
	for range p.MaxRecoveryInvokes {
		stored, err := delivery.Stored(ctx, p.Loki, r.Function)
		if err != nil {
			return r, err
		}
		if stored >= r.Written {
			break
		}
		res, err := sb.Invoke(ctx, sandbox.Function{Messages: []string{"after", "the outage"}, Duration: time.Second})
		if err != nil {
			return r, fmt.Errorf("invocation after the outage: %w", err)
		}
		r.Written += len(res.Lines)
	}
	r.EmulatorDropped = sb.Stats().DroppedRecords
	sd, err := Shutdown(ctx, sb)
	r.PeakRSSBytes, r.ShutdownTook = sd.PeakRSSBytes, sd.Duration
	if err != nil {
		return r, err
	}
	if r.Summary, err = ParseSummary(sb.ExtensionOutput()); err != nil {
		return r, err
	}
	r.Delivered, r.Dropped, r.Spilled, r.Lost = r.Summary.Delivered, r.Summary.Dropped, r.Summary.Spilled, r.Summary.Lost
	r.InLoki, err = delivery.Stored(ctx, p.Loki, r.Function)
	return r, err
}

// CheckSummary holds the shutdown summary to the invariant and to what
// Loki holds (Summary.Check).
func (r FloodResult) CheckSummary() error { return r.Summary.Check(r.Written, r.InLoki) }

// summaryLine is the extension's last line at SHUTDOWN, with its counts.
func summaryLine(out string) string {
	for line := range strings.Lines(out) {
		if strings.Contains(line, `msg="shut down"`) || strings.Contains(line, "msg=\"shutting down with") {
			return line
		}
	}
	return ""
}

// field reads a whole-number field of a log line; 0 when it is absent
// (lost= is there only when lines were lost).
func field(line, name string) int {
	m := regexp.MustCompile(`\b` + name + `=(\d+)`).FindStringSubmatch(line)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// env is the extension's environment for a local run: the listener on a
// free port (AWS_SAM_LOCAL binds it without the sandbox host name) and the
// push URL, then extra.
func env(pushURL string, extra ...string) ([]string, error) {
	port, err := freeport.Pick()
	if err != nil {
		return nil, err
	}
	return append([]string{"AWS_SAM_LOCAL=true", "TELEMETRY_LISTENER_PORT=" + strconv.Itoa(port), "LOKI_URL=" + pushURL}, extra...), nil
}

// Shutdown sends SHUTDOWN and checks the extension exited by itself, in
// time and with status 0.
func Shutdown(ctx context.Context, sb *sandbox.Sandbox) (sandbox.ShutdownResult, error) {
	sd, err := sb.Shutdown(ctx, "spindown")
	if err != nil {
		return sd, fmt.Errorf("shutdown: %w", err)
	}
	if sd.Killed || sd.ExitCode != 0 {
		return sd, fmt.Errorf("shutdown: killed %v, exit code %d after %s", sd.Killed, sd.ExitCode, sd.Duration)
	}
	return sd, nil
}
