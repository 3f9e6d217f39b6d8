package sandbox

import (
	"context"
	"errors"
	"time"
)

// ErrNotSnapStart is returned by Restore outside ModeSnapStart, and
// ErrRestored when the snapshot was already restored: an environment is
// restored from its snapshot once.
var (
	ErrNotSnapStart = errors.New("sandbox: only a SnapStart environment is restored")
	ErrRestored     = errors.New("sandbox: the snapshot was already restored")
)

// Restore resumes a SnapStart snapshot: it thaws and emits restoreStart,
// restoreRuntimeDone and restoreReport, then leaves the environment running
// for the first invocation. Extensions get no event
// (docs/lambda-runtime-contract.md#snapstart). Invoke
// restores by itself when Restore was not called.
func (s *Sandbox) Restore(ctx context.Context) error {
	if err := s.usable(); err != nil {
		return err
	}
	s.mu.Lock()
	switch {
	case s.cfg.Mode != ModeSnapStart:
		s.mu.Unlock()
		return ErrNotSnapStart
	case s.restored:
		s.mu.Unlock()
		return ErrRestored
	}
	s.restored = true
	s.mu.Unlock()
	start := time.Now()
	s.thaw()
	s.emitPlatform("platform.restoreStart", map[string]any{
		"functionName": s.cfg.FunctionName, "functionVersion": "$LATEST", "runtimeVersion": "emulated.v1",
		"instanceMaxMemory": s.cfg.MemoryMB,
	})
	s.restoreRuntime(ctx)
	s.emitPlatform("platform.restoreRuntimeDone", map[string]any{"status": "success"})
	d := time.Since(start)
	s.mu.Lock()
	s.restoreDuration = d
	s.mu.Unlock()
	s.emitPlatform("platform.restoreReport", map[string]any{"status": "success", "metrics": map[string]any{"durationMs": ms(d)}})
	return ctx.Err()
}

func (s *Sandbox) isRestored() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restored
}
