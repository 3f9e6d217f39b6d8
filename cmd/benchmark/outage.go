package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/config"
	"github.com/lambda-loki/grafana-loki-extension/internal/faultproxy"
	"github.com/lambda-loki/grafana-loki-extension/internal/scenario"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// Targets while Loki is away. The outage runs with the default LOKI_TIMEOUT_MS and
// FLUSH_TIMEOUT_MS, so that its figures are what a function configured
// with nothing but LOKI_URL gets.
const (
	maxOutageMedian = 30 * time.Millisecond
	maxOutageMax    = 60 * time.Millisecond
	// The outage run writes 600 small lines, and the outage's bookkeeping
	// should cost no memory to speak of: the same bound as 5 × 20 lines.
	maxOutageRSS = maxSmallRSS
)

// measureOutage runs the outage scenario (package scenario, as
// e2e/outage_test.go does) with Loki refusing, hanging, and answering 429
// with Retry-After: 2: 30 invocations × 20 lines, 200 ms apart, Loki away
// for invocations 3 to 22.
func measureOutage(ctx context.Context, b *bench) error {
	srv, dir, err := b.lokiAndExtensions(ctx)
	if err != nil {
		return err
	}
	const retryAfter = 2 * time.Second
	faults := []struct {
		name  string
		fault faultproxy.Fault
	}{
		{"Loki refusing", faultproxy.Fault{Kind: faultproxy.Down}},
		{"Loki hanging", faultproxy.Fault{Kind: faultproxy.Hang}},
		{"Loki answering 429, Retry-After: 2", faultproxy.Fault{Kind: faultproxy.Status, Code: 429, RetryAfter: "2"}},
	}
	for _, f := range faults {
		cfg := sandbox.Config{ExtensionsDir: dir, FunctionName: functionName("outage")}
		if b.opts.verbose {
			cfg.ExtensionOutput = b.progress
		}
		plan := scenario.NewPlan(srv, cfg, f.fault)
		o, err := scenario.Run(ctx, plan)
		if err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
		metric := "outage, " + f.name + ": "
		during := o.During()
		m, worst := median(during), slices.Max(during)
		b.judge(metric+fmt.Sprintf("time after runtimeDone, invocations %d–%d", plan.FirstFailed+2, plan.LastFailed+1),
			fmt.Sprintf("≤ %d ms median, ≤ %d ms max", maxOutageMedian.Milliseconds(), maxOutageMax.Milliseconds()),
			fmt.Sprintf("%s median, max %s (%d invocations × %d lines, %d ms apart)", ms(m), ms(worst), len(during), plan.Fn.Lines, plan.Gap.Milliseconds()),
			m <= maxOutageMedian && worst <= maxOutageMax)

		first := o.FirstWindow()
		target, bound := fmt.Sprintf("≤ %d ms (about one round trip)", maxFirstWindow.Milliseconds()), maxFirstWindow
		if f.fault.Kind == faultproxy.Hang {
			target, bound = fmt.Sprintf("≤ %d ms (the window's wait, LOKI_WINDOW_WAIT_MS)", maxFirstWindowHanging.Milliseconds()), maxFirstWindowHanging
		}
		took := "the extension logged no time for its push"
		if d, ok := o.FailedPushTook(); ok {
			took = "the failed push " + ms(d) + " by the extension's log"
			if f.fault.Kind == faultproxy.Hang {
				took = "the request went on past the window and timed out after " + ms(d)
			}
		}
		b.judge(metric+fmt.Sprintf("time after runtimeDone, invocation %d (the first failing)", plan.FirstFailed+1), target,
			fmt.Sprintf("%s (%s)", ms(first), took), first <= bound)

		d := o.Delivery
		began, ended := o.Logged()
		rss := o.Shutdown.PeakRSSBytes
		b.judge(metric+"lines lost and duplicated by SHUTDOWN, peak RSS",
			fmt.Sprintf("0 lost, 0 duplicated; ≤ %s", mib(maxOutageRSS)),
			fmt.Sprintf("%d of %d lost, %d duplicated, %d at a wrong time; %s; outage logged %d×, recovery %d×",
				d.Missing, d.Written, d.Duplicated, d.WrongTime, mib(rss), began, ended),
			d.Complete() && rss <= maxOutageRSS)

		if f.fault.RetryAfter != "" {
			pauses := scenario.PausesAfterRefusal(o.Requests)
			if len(pauses) == 0 {
				return fmt.Errorf("%s: no request was refused, or none followed a refusal", f.name)
			}
			shortest := slices.Min(pauses)
			b.judge(metric+"shortest pause before the request after a 429", fmt.Sprintf("≥ %.0f s (Retry-After)", retryAfter.Seconds()),
				fmt.Sprintf("%.3f s (%d requests refused, %d in all)", shortest.Seconds(), scenario.Refused(o.Requests), len(o.Requests)),
				shortest >= retryAfter)
		}
	}
	return nil
}

// measureMemory runs the memory scenario (package scenario, as
// e2e/memory_test.go does): 200 000 lines of 512 bytes while Loki is down,
// in each flush mode with the spill file, and in end mode without it; then
// Loki is back before SHUTDOWN.
func measureMemory(ctx context.Context, b *bench) error {
	srv, dir, err := b.lokiAndExtensions(ctx)
	if err != nil {
		return err
	}
	for _, mode := range scenario.FloodModes() {
		cfg := sandbox.Config{ExtensionsDir: dir, FunctionName: functionName("memory")}
		if b.opts.verbose {
			cfg.ExtensionOutput = b.progress
		}
		plan := scenario.NewFloodPlan(srv, cfg, mode.Strategy, mode.Spill)
		plan.DownInvokes = b.reps(plan.DownInvokes, 2)
		r, err := scenario.Flood(ctx, plan)
		if err != nil {
			return fmt.Errorf("%s, spill %v: %w", mode.Strategy, mode.Spill, err)
		}
		bound := plan.RSSBound()
		// The extension's default GOMEMLIMIT for this QUEUE_MAX_BYTES: the
		// heap's collector keeps below it, so the RSS settles near it plus
		// the binary's resident code.
		memLimit := config.MemoryLimit(plan.QueueMaxBytes)
		metric := fmt.Sprintf("memory, %d lines of 512 B with Loki down, %s, ", plan.DownInvokes*plan.LinesEach, mode.Strategy)
		rssTarget := fmt.Sprintf("RSS ≤ %s (1.5 × QUEUE_MAX_BYTES %s + 32 MiB)", mib(bound), mib(int64(plan.QueueMaxBytes)))
		emulator := ""
		if r.EmulatorDropped > 0 {
			emulator = fmt.Sprintf("; the emulator dropped %d records", r.EmulatorDropped)
		}
		if mode.Spill {
			lost := r.Written - r.InLoki
			b.judge(metric+"spill on", rssTarget+"; 0 lost once Loki is back",
				fmt.Sprintf("%s (GOMEMLIMIT %s); %d lost: %d of %d lines in Loki by SHUTDOWN, %d spilled, %d dropped%s",
					mib(r.PeakRSSBytes), mib(memLimit), lost, r.InLoki, r.Written, r.Spilled, r.Dropped, emulator),
				r.PeakRSSBytes <= bound && lost == 0 && r.Dropped == 0 && r.Lost == 0)
			continue
		}
		b.judge(metric+"spill off (QUEUE_SPILL_MAX_BYTES=0)", rssTarget+"; dropped = written − in Loki",
			fmt.Sprintf("%s; dropped %d, written − in Loki %d − %d = %d%s",
				mib(r.PeakRSSBytes), r.Dropped, r.Written, r.InLoki, r.Written-r.InLoki, emulator),
			r.PeakRSSBytes <= bound && r.Dropped > 0 && r.Dropped == r.Written-r.InLoki)
	}
	return nil
}
