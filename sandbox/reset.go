package sandbox

import (
	"context"
	"encoding/json"
	"syscall"
	"time"
)

// ShutdownResult is what happened at SHUTDOWN.
type ShutdownResult struct {
	Reason   string
	Deadline time.Time
	// Duration is from SHUTDOWN sent to the last extension's exit.
	Duration time.Duration
	// Killed is true when an extension was still running at the deadline
	// and got SIGKILL.
	Killed bool
	// ExitCode of the (last) extension; -1 when killed.
	ExitCode int
	// ExitCodes holds every extension's exit code by name (-1: killed),
	// those that exited before the SHUTDOWN too.
	ExitCodes map[string]int
	// PeakRSSBytes is the largest extension's peak resident memory.
	PeakRSSBytes int64
}

// Shutdown ends the environment for good: the shutdown phase (see
// shutDown) with the given reason, then Close.
func (s *Sandbox) Shutdown(ctx context.Context, reason string) (ShutdownResult, error) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return ShutdownResult{}, ErrEnded
	}
	s.ended = true
	s.mu.Unlock()
	res, err := s.shutDown(ctx, reason)
	s.Close()
	return res, err
}

// shutDown runs the shutdown phase: thaw, flush queued telemetry (at most
// 1 s), send SHUTDOWN with a deadline ShutdownTimeout away to the
// extensions registered for it (the others are killed at once), keep
// delivering telemetry, and SIGKILL whatever still runs at the deadline.
// The runtime process goes first: SIGTERM, then SIGKILL 300 ms later
// (docs/lambda-runtime-contract.md#shutdown). The emulator itself stays up.
func (s *Sandbox) shutDown(ctx context.Context, reason string) (ShutdownResult, error) {
	s.thaw()
	s.flushTelemetry(time.Second)

	start := time.Now()
	res := ShutdownResult{Reason: reason, Deadline: start.Add(s.cfg.ShutdownTimeout), ExitCodes: map[string]int{}}
	s.stopRuntime(res.Deadline)
	payload, _ := json.Marshal(map[string]any{"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": res.Deadline.UnixMilli()})
	s.mu.Lock()
	exts := append([]*extension(nil), s.exts...)
	for _, e := range exts {
		e.shuttingDown = true
		switch {
		case e.state == stateExited:
		case e.stop:
			e.deliver(payload)
		default:
			// Not registered for SHUTDOWN: killed at once.
			_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	s.mu.Unlock()

	timer := time.NewTimer(time.Until(res.Deadline))
	defer timer.Stop()
	for _, e := range exts {
		select {
		case <-e.exited:
		case <-timer.C:
			res.Killed = true
			s.killAll()
			<-e.exited
		case <-ctx.Done():
			s.killAll()
			return res, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range exts {
		if d := e.exitedAt.Sub(start); d > res.Duration {
			res.Duration = d
		}
		res.PeakRSSBytes = max(res.PeakRSSBytes, e.maxRSS.Load())
		res.ExitCode = e.cmd.ProcessState.ExitCode()
		res.ExitCodes[e.name] = res.ExitCode
	}
	return res, nil
}

// killAll SIGKILLs every extension still running.
func (s *Sandbox) killAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.exts {
		if e.state != stateExited {
			_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	s.signalRuntime(syscall.SIGKILL)
}

// reset ends the environment after a failure as Lambda does
// (docs/lambda-runtime-contract.md#reset-after-a-failure): the shutdown phase with
// the reason, after which the next Invoke initialises a new environment. /tmp is
// kept, as Lambda keeps it. A Managed Instances environment is terminated for good
// instead.
func (s *Sandbox) reset(ctx context.Context, reason string) (ShutdownResult, error) {
	if s.cfg.Mode == ModeManagedInstances {
		return s.Shutdown(ctx, reason)
	}
	res, err := s.shutDown(ctx, reason)
	if err != nil {
		s.Close()
		return res, err
	}
	s.retire()
	return res, nil
}

// retire forgets the ended environment's extensions and subscriptions
// (keeping their telemetry counts), so that the next init starts afresh.
func (s *Sandbox) retire() {
	s.mu.Lock()
	subs := s.subs
	for _, sub := range subs {
		s.retired = s.retired.plus(sub.stats())
	}
	s.exts, s.subs, s.initEvents = nil, nil, nil
	s.rt, s.runtimeFailed = nil, nil
	s.internal, s.invokes = 0, 0
	s.registrationClosed, s.subscriptionClosed, s.frozen, s.restored = false, false, false, false
	s.failed = nil
	s.needsInit = true
	s.mu.Unlock()
	for _, sub := range subs {
		sub.close()
	}
}

// reinit initialises a new environment after a reset, inside the Invoke
// that needs it: Lambda's suppressed init, whose events say phase "invoke",
// within the function's timeout. A SnapStart environment re-creates its
// snapshot (phase "snap-start") and is then restored from it. When the init
// fails, what it launched is shut down and the next Invoke tries again.
func (s *Sandbox) reinit(ctx context.Context) error {
	s.mu.Lock()
	s.needsInit = false
	if s.cfg.Mode != ModeSnapStart {
		s.initPhase = "invoke"
	}
	s.mu.Unlock()
	err := s.init(ctx, s.cfg.FunctionTimeout)
	if err != nil {
		_, _ = s.reset(ctx, "failure")
	}
	return err
}
