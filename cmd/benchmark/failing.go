package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/faultproxy"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokibin"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/internal/scenario"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// Targets of a failing Loki's first window, of a fleet against Loki's
// default limits, and of the SHUTDOWN drain.
const (
	// The window that finds Loki away costs about one round trip; a
	// hanging Loki the window's wait (LOKI_WINDOW_WAIT_MS, 250 ms).
	maxFirstWindow        = 100 * time.Millisecond
	maxFirstWindowHanging = 300 * time.Millisecond
	maxFleetP99           = 60 * time.Millisecond
	maxFleetMax           = 150 * time.Millisecond
	// maxRecoveryRate is how many times the fleet's steady request rate
	// its rate may reach in the seconds after an outage.
	maxRecoveryRate = 2.0
	minDrainRatio   = 0.7
	// ceilingPushers is how many pushers at once measure Loki's ceiling.
	ceilingPushers = 8
)

// faults are the ways of failing whose first window is measured.
var faults = []struct {
	name  string
	fault faultproxy.Fault
}{
	{"closing connections", faultproxy.Fault{Kind: faultproxy.Down}},
	{"500", faultproxy.Fault{Kind: faultproxy.Status, Code: 500}},
	{"429", faultproxy.Fault{Kind: faultproxy.Status, Code: 429, NoRetryAfter: true}},
	{"429 with Retry-After: 2", faultproxy.Fault{Kind: faultproxy.Status, Code: 429, RetryAfter: "2"}},
	{"hanging", faultproxy.Fault{Kind: faultproxy.Hang}},
}

// measureFirstWindow runs a short outage (the outage scenario's plan, 10
// invocations 200 ms apart, Loki away for the 3rd to the 7th) for each
// way of failing, with the default settings, and reports what the first
// failing invocation spent after its runtimeDone.
func measureFirstWindow(ctx context.Context, b *bench) error {
	srv, dir, err := b.lokiAndExtensions(ctx)
	if err != nil {
		return err
	}
	for _, f := range faults {
		cfg := sandbox.Config{ExtensionsDir: dir, FunctionName: functionName("first-window")}
		if b.opts.verbose {
			cfg.ExtensionOutput = b.progress
		}
		plan := scenario.NewPlan(srv, cfg, f.fault)
		plan.Invokes, plan.LastFailed = 10, 6
		o, err := scenario.Run(ctx, plan)
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		target, bound := fmt.Sprintf("≤ %d ms", maxFirstWindow.Milliseconds()), maxFirstWindow
		if f.fault.Kind == faultproxy.Hang {
			target, bound = fmt.Sprintf("≤ %d ms", maxFirstWindowHanging.Milliseconds()), maxFirstWindowHanging
		}
		during := o.During()
		d := o.Delivery
		b.judge("first window, Loki "+f.name+": time after runtimeDone of the first failing invocation", target+"; later ≤ 30 ms median, ≤ 60 ms max; 0 lost, 0 duplicated",
			fmt.Sprintf("%s; later %s median, max %s; %d of %d lost, %d duplicated", ms(o.FirstWindow()), ms(median(during)), ms(slices.Max(during)), d.Missing, d.Written, d.Duplicated),
			o.FirstWindow() <= bound && median(during) <= maxOutageMedian && slices.Max(during) <= maxOutageMax && d.Complete())
	}
	return nil
}

// measureFleet runs the fleet scenario against a Loki of its own, started
// with Loki's default limits (4 MB/s per tenant, 3 MB/s per stream).
func measureFleet(ctx context.Context, b *bench) error {
	_, dir, err := b.lokiAndExtensions(ctx)
	if err != nil {
		return err
	}
	bin, err := lokibin.Ensure(ctx, b.progress)
	if err != nil {
		return err
	}
	srv, err := lokiserver.Start(ctx, lokiserver.Options{Binary: bin})
	if err != nil {
		return err
	}
	defer srv.Stop()
	cfg := sandbox.Config{ExtensionsDir: dir, FunctionName: functionName("fleet")}
	plan := scenario.NewFleetPlan(srv, cfg, b.opts.fleet)
	if b.opts.quick {
		plan.BurstInvokes, plan.Steady, plan.Outage, plan.Recovery = 10, 2*time.Second, 4*time.Second, 4*time.Second
	}
	r, err := scenario.Fleet(ctx, plan)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("fleet, %d sandboxes, Loki's default limits: ", plan.Sandboxes)
	d := r.Delivery
	b.judge(name+"lines written, in Loki, duplicated; 429s", "0 lost, 0 duplicated",
		fmt.Sprintf("%d written, %d in Loki, %d duplicated, %d at a wrong time; Loki answered 429 %d times", d.Written, d.Delivered, d.Duplicated, d.WrongTime, r.RateLimited),
		d.Complete())
	burst := slices.Sorted(slices.Values(r.Burst))
	var billed time.Duration
	for _, t := range r.Burst {
		billed += t
	}
	// The same burst against a Loki that does not limit it (the bench's,
	// with high limits): on a loaded machine a push takes long anyway, and
	// what Loki's limits add is the difference.
	healthyPlan := plan
	healthyPlan.Loki, healthyPlan.Outage = b.loki, 0
	healthyPlan.Sandbox.FunctionName = functionName("fleet-healthy")
	h, err := scenario.Fleet(ctx, healthyPlan)
	if err != nil {
		return fmt.Errorf("the same fleet against a Loki without limits: %w", err)
	}
	healthy := slices.Sorted(slices.Values(h.Burst))
	var healthyBilled time.Duration
	for _, t := range h.Burst {
		healthyBilled += t
	}
	addedP99, addedMax := quantile(burst, 0.99)-quantile(healthy, 0.99), burst[len(burst)-1]-healthy[len(healthy)-1]
	b.judge(name+fmt.Sprintf("time after runtimeDone, %d invocations × %d lines of %d B, %d ms apart, against the same fleet on a Loki without limits",
		plan.BurstInvokes, plan.BurstFn.Lines, plan.BurstFn.LineBytes, plan.BurstGap.Milliseconds()),
		fmt.Sprintf("added p99 ≤ %d ms, max ≤ %d ms", maxFleetP99.Milliseconds(), maxFleetMax.Milliseconds()),
		fmt.Sprintf("p50 %s, p99 %s, max %s, in all %s; without limits p50 %s, p99 %s, max %s, in all %s (%d lost, 429 %d times): added p99 %s, max %s, in all %s",
			ms(quantile(burst, 0.5)), ms(quantile(burst, 0.99)), ms(burst[len(burst)-1]), ms(billed),
			ms(quantile(healthy, 0.5)), ms(quantile(healthy, 0.99)), ms(healthy[len(healthy)-1]), ms(healthyBilled),
			h.Delivery.Missing, h.RateLimited, ms(addedP99), ms(addedMax), ms(billed-healthyBilled)),
		addedP99 <= maxFleetP99 && addedMax <= maxFleetMax)
	if plan.Outage > 0 {
		later := slices.Sorted(slices.Values(r.Later))
		b.judge(name+fmt.Sprintf("requests per second in the %.0f s after a %.0f s outage (Loki refusing), against before it", plan.Recovery.Seconds(), plan.Outage.Seconds()),
			fmt.Sprintf("≤ %.0f× the steady rate", maxRecoveryRate),
			fmt.Sprintf("%.1f/s after, %.1f/s before (%.2f×); time after runtimeDone meanwhile p99 %s, max %s",
				r.RecoveryRate, r.SteadyRate, r.RecoveryRate/r.SteadyRate, ms(quantile(later, 0.99)), ms(later[len(later)-1])),
			r.RecoveryRate <= maxRecoveryRate*r.SteadyRate)
	}
	return nil
}

// measureDrain builds a backlog with Loki down (the memory scenario's
// flood, end mode, spill on), brings Loki back at SHUTDOWN, and compares
// the drain's throughput with what Loki ingests from parallel pushers.
func measureDrain(ctx context.Context, b *bench) error {
	srv, dir, err := b.lokiAndExtensions(ctx)
	if err != nil {
		return err
	}
	cfg := sandbox.Config{ExtensionsDir: dir, FunctionName: functionName("drain")}
	if b.opts.verbose {
		cfg.ExtensionOutput = b.progress
	}
	plan := scenario.NewFloodPlan(srv, cfg, "end", true)
	plan.DownInvokes, plan.MaxRecoveryInvokes = b.reps(2, 1), 0
	r, err := scenario.Flood(ctx, plan)
	if err != nil {
		return err
	}
	backlog := float64(r.Written * scenario.FloodLineBytes)
	drained := float64(r.InLoki * scenario.FloodLineBytes)
	throughput := drained / r.ShutdownTook.Seconds()
	ceiling, err := scenario.Ceiling(ctx, srv, functionName("ceiling"), r.Written, scenario.FloodLineBytes, ceilingPushers)
	if err != nil {
		return err
	}
	ratio := throughput / ceiling
	b.judge(fmt.Sprintf("drain: a backlog of %d lines of %d B, Loki back at SHUTDOWN", r.Written, scenario.FloodLineBytes),
		fmt.Sprintf("≥ %.1f × Loki's ceiling (%d pushers at once, no extension)", minDrainRatio, ceilingPushers),
		fmt.Sprintf("backlog %.1f MB, drained %.1f MB in %s: %.1f MB/s; ceiling %.1f MB/s; ratio %.2f; %d lines lost at the deadline",
			backlog/1e6, drained/1e6, r.ShutdownTook.Round(time.Millisecond), throughput/1e6, ceiling/1e6, ratio, r.Written-r.InLoki),
		ratio >= minDrainRatio)
	return nil
}

// quantile is the q-quantile of sorted, by the nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(int(q*float64(len(sorted))), len(sorted)-1)]
}
