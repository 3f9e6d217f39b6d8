package scenario

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/delivery"
	"github.com/lambda-loki/grafana-loki-extension/internal/faultproxy"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/internal/wait"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// FleetPlan is several sandboxes of one function invoked at once, all
// writing to the one stream of the function and sharing the tenant's
// limits, as a function's sandboxes do at scale: a burst that a Loki with
// its default limits answers with 429s, then a steady load with an outage
// (Loki refusing connections) in the middle of it.
type FleetPlan struct {
	// Loki is the real Loki behind the fault proxy; the fleet scenario
	// means one started with its default limits.
	Loki *lokiserver.Server
	// Sandbox is every sandbox's configuration (one FunctionName).
	Sandbox   sandbox.Config
	Sandboxes int
	// Burst is what each sandbox runs first: BurstInvokes invocations of
	// BurstFn, BurstGap apart.
	BurstInvokes int
	BurstGap     time.Duration
	BurstFn      sandbox.Function
	// Then SteadyFn every SteadyGap: for Steady with Loki there, Outage
	// with it away, and Recovery once it is back. A zero Outage skips
	// this part.
	SteadyFn                 sandbox.Function
	SteadyGap                time.Duration
	Steady, Outage, Recovery time.Duration
}

// NewFleetPlan returns the fleet: n sandboxes, each 30 invocations × 200
// lines of 200 B, 100 ms apart; then 20 lines every 500 ms for 5 s, 10 s
// with Loki away and 10 s after.
func NewFleetPlan(srv *lokiserver.Server, cfg sandbox.Config, n int) FleetPlan {
	return FleetPlan{Loki: srv, Sandbox: cfg, Sandboxes: n,
		BurstInvokes: 30, BurstGap: 100 * time.Millisecond, BurstFn: sandbox.Function{Lines: 200, LineBytes: 200},
		SteadyFn: sandbox.Function{Lines: 20, LineBytes: 200}, SteadyGap: 500 * time.Millisecond,
		Steady: 5 * time.Second, Outage: 10 * time.Second, Recovery: 10 * time.Second}
}

// FleetResult is what a fleet run did.
type FleetResult struct {
	// Burst and Later are the time after runtimeDone of every invocation
	// of the burst, and of the steady load with its outage.
	Burst, Later []time.Duration
	// RateLimited counts the requests Loki answered 429.
	RateLimited int64
	// Requests are the pushes the proxy saw.
	Requests []faultproxy.Request
	// SteadyRate and RecoveryRate are the fleet's requests per second
	// before the outage and in the Recovery after it.
	SteadyRate, RecoveryRate float64
	Delivery                 delivery.Delivery
	// Output is the first sandbox's extension log.
	Output string
}

// fleetMember is one sandbox of the fleet and what it wrote.
type fleetMember struct {
	sb           *sandbox.Sandbox
	lines        []sandbox.Line
	burst, later []time.Duration
}

// Fleet runs p: the sandboxes start together, run the burst, then the
// steady load with its outage, and shut down together; then what Loki
// holds is compared with what they all wrote.
func Fleet(ctx context.Context, p FleetPlan) (r FleetResult, err error) {
	proxy, err := faultproxy.Start(faultproxy.Config{Upstream: p.Loki.URL()})
	if err != nil {
		return r, err
	}
	defer proxy.Close()
	start := time.Now()
	members := make([]*fleetMember, p.Sandboxes)
	for i := range members {
		cfg := p.Sandbox
		if cfg.Env, err = env(proxy.URL()+"/api/prom/push", cfg.Env...); err != nil {
			return r, err
		}
		sb, err := sandbox.Start(ctx, cfg)
		if err != nil {
			return r, fmt.Errorf("starting sandbox %d: %w", i+1, err)
		}
		defer sb.Close()
		members[i] = &fleetMember{sb: sb}
	}
	defer func() { r.Output = members[0].sb.ExtensionOutput() }()

	if err := together(members, func(m *fleetMember) error {
		return m.invoke(ctx, p.BurstFn, p.BurstGap, p.BurstInvokes, time.Time{}, &m.burst)
	}); err != nil {
		return r, err
	}
	if p.Outage > 0 {
		steadyFrom := time.Now()
		outageAt := steadyFrom.Add(p.Steady)
		backAt := outageAt.Add(p.Outage)
		endAt := backAt.Add(p.Recovery)
		go func() {
			if wait.Sleep(ctx, time.Until(outageAt)) {
				proxy.SetFault(faultproxy.Fault{Kind: faultproxy.Down})
			}
			if wait.Sleep(ctx, time.Until(backAt)) {
				proxy.SetFault(faultproxy.Fault{Kind: faultproxy.Pass})
			}
		}()
		if err := together(members, func(m *fleetMember) error {
			return m.invoke(ctx, p.SteadyFn, p.SteadyGap, 0, endAt, &m.later)
		}); err != nil {
			return r, err
		}
		r.Requests = proxy.Requests()
		r.SteadyRate = rate(r.Requests, steadyFrom, outageAt)
		r.RecoveryRate = rate(r.Requests, backAt, endAt)
	}
	if err := together(members, func(m *fleetMember) error {
		_, err := Shutdown(ctx, m.sb)
		return err
	}); err != nil {
		return r, err
	}
	r.Requests = proxy.Requests()
	r.RateLimited = proxy.Stats().RateLimited
	var written []sandbox.Line
	for _, m := range members {
		written = append(written, m.lines...)
		r.Burst = append(r.Burst, m.burst...)
		r.Later = append(r.Later, m.later...)
	}
	r.Delivery, err = delivery.Check(ctx, p.Loki, p.Sandbox.FunctionName, written, start)
	return r, err
}

// invoke runs fn every gap, n times, or until until when n is 0, adding
// each invocation's time after runtimeDone to post.
func (m *fleetMember) invoke(ctx context.Context, fn sandbox.Function, gap time.Duration, n int, until time.Time, post *[]time.Duration) error {
	for i := 0; n == 0 && time.Now().Before(until) || i < n; i++ {
		began := time.Now()
		res, err := m.sb.Invoke(ctx, fn)
		if err != nil {
			return err
		}
		if res.HeldPastDeadline {
			return fmt.Errorf("the extension held the sandbox past the deadline")
		}
		m.lines = append(m.lines, res.Lines...)
		*post = append(*post, res.PostRuntime)
		if !wait.Sleep(ctx, time.Until(began.Add(gap))) {
			return ctx.Err()
		}
	}
	return nil
}

// together runs f for every member at once and returns the first error.
func together(members []*fleetMember, f func(*fleetMember) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(members))
	for i, m := range members {
		wg.Go(func() { errs[i] = f(m) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("sandbox %d: %w", i+1, err)
		}
	}
	return nil
}

// rate is the requests per second that came in [from, to).
func rate(requests []faultproxy.Request, from, to time.Time) float64 {
	n := 0
	for _, r := range requests {
		if !r.At.Before(from) && r.At.Before(to) {
			n++
		}
	}
	return float64(n) / to.Sub(from).Seconds()
}
