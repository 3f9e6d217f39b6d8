package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
)

// Outcome is how the scripted function ends.
type Outcome string

const (
	// Success: runtimeDone status "success".
	Success Outcome = "success"
	// Error: a handled error; status "error", no reset.
	Error Outcome = "error"
	// Crash: the runtime exits; status "failure", then a reset (SHUTDOWN
	// with reason "failure").
	Crash Outcome = "crash"
	// Timeout: the function runs until its deadline; status "timeout", then
	// a reset (SHUTDOWN with reason "timeout").
	Timeout Outcome = "timeout"
)

// Function scripts one invocation of the function.
type Function struct {
	// Lines is how many log lines to write (ignored when Messages is set).
	Lines int
	// LineBytes pads each message to this many bytes.
	LineBytes int
	// Duration spreads the lines over this long (0: as fast as possible).
	Duration time.Duration
	// Messages are written as given, one line each.
	Messages []string
	// Fields are extra keys of each JSON-format record.
	Fields map[string]any
	// Level is the level of JSON-format records (default INFO).
	Level string
	// Outcome is how the invocation ends (default Success).
	Outcome Outcome
}

// Line is one log line the function wrote: the time an extension is expected
// to stamp on it (the event's time for a text record, the record's own
// timestamp for a JSON one), and the text it is expected to ship (a text
// record less its trailing newline; a JSON record as sent).
type Line struct {
	Time time.Time
	Text string
}

// InvokeResult is what happened in one invocation.
type InvokeResult struct {
	RequestID string
	Deadline  time.Time
	Lines     []Line
	// Status is the runtimeDone status.
	Status string
	// RuntimeDone is when the runtime finished; Next is when the last
	// extension called /next afterwards.
	RuntimeDone, Next time.Time
	// PostRuntime is Next − RuntimeDone (never negative): the extensions'
	// billed overhead, Lambda's PostRuntimeExtensionsDuration.
	PostRuntime time.Duration
	// HeldPastDeadline is true when an extension had not called /next by the
	// deadline; the sandbox is then reset.
	HeldPastDeadline bool
	// Report is the platform.report record sent after the invocation.
	Report map[string]any
	// Reset is the shutdown that followed a crash, timeout or held deadline.
	Reset *ShutdownResult
}

// Invoke runs one invocation: thaw, platform.start, INVOKE to the
// extensions, the function's lines, platform.runtimeDone, wait for every
// extension's /next (bounded by the deadline), platform.report, freeze.
func (s *Sandbox) Invoke(ctx context.Context, fn Function) (InvokeResult, error) {
	if err := s.usable(); err != nil {
		return InvokeResult{}, err
	}
	if s.cfg.Mode == ModeSnapStart && !s.isRestored() {
		// A SnapStart version is only ever invoked in an environment
		// restored from its snapshot (contract §4).
		if err := s.Restore(ctx); err != nil {
			return InvokeResult{}, err
		}
	}
	s.thaw()
	managed := s.cfg.Mode == ModeManagedInstances
	res := InvokeResult{RequestID: uuid.NewString(), Status: "success"}
	start := time.Now()
	res.Deadline = start.Add(s.cfg.FunctionTimeout)
	s.emitPlatform("platform.start", map[string]any{"requestId": res.RequestID, "version": "$LATEST"})

	var waitFor []*extension
	var coldStart map[string]any
	if !managed {
		payload, _ := json.Marshal(map[string]any{
			"eventType": "INVOKE", "deadlineMs": res.Deadline.UnixMilli(), "requestId": res.RequestID,
			"invokedFunctionArn": "arn:aws:lambda:" + s.cfg.Region + ":123456789012:function:" + s.cfg.FunctionName,
			"tracing":            map[string]string{"type": "X-Amzn-Trace-Id", "value": "Root=1-" + strconv.FormatInt(start.Unix(), 16) + "-" + strings.ReplaceAll(res.RequestID, "-", "")[:24] + ";Sampled=1"},
		})
		s.mu.Lock()
		for _, e := range s.exts {
			if e.invoke && e.state != stateExited {
				e.deliver(payload)
				waitFor = append(waitFor, e)
			}
		}
		s.invokes++
		if s.invokes == 1 {
			// The first invocation's REPORT carries the cold start: the init,
			// or with SnapStart the restore, since init ran at publish time.
			if s.cfg.Mode == ModeSnapStart {
				coldStart = map[string]any{"restoreDurationMs": ms(s.restoreDuration)}
			} else {
				coldStart = map[string]any{"initDurationMs": ms(s.initDuration)}
			}
		}
		s.mu.Unlock()
	}

	res.Lines = s.runFunction(ctx, fn, res.RequestID, res.Deadline)
	status, errorType := "success", ""
	switch fn.Outcome {
	case Error:
		status, errorType = "error", "Function.Error"
	case Crash:
		status, errorType = "failure", "Runtime.ExitError"
	case Timeout:
		sleepCtx(ctx, time.Until(res.Deadline))
		status, errorType = "timeout", "Sandbox.Timeout"
	}
	res.Status = status
	res.RuntimeDone = time.Now()
	runtimeMs := ms(res.RuntimeDone.Sub(start))
	if !managed {
		rec := map[string]any{"requestId": res.RequestID, "status": status,
			"metrics": map[string]any{"durationMs": runtimeMs, "producedBytes": 0},
			"spans": []map[string]any{
				{"name": "responseLatency", "start": start.UTC().Format(TimeLayout), "durationMs": runtimeMs},
				{"name": "responseDuration", "start": res.RuntimeDone.UTC().Format(TimeLayout), "durationMs": 0.0},
			}}
		if errorType != "" {
			rec["errorType"] = errorType
		}
		s.emitPlatform("platform.runtimeDone", rec)
	}

	// The sandbox freezes only once every extension has called /next.
	deadlineCtx, cancel := context.WithDeadline(ctx, res.Deadline)
	defer cancel()
	// After a timeout or a crash Lambda resets at once; it waits for no one.
	if fn.Outcome == Timeout || fn.Outcome == Crash {
		waitFor = nil
	}
	// An extension is done when it is back in /next after this INVOKE began.
	err := s.waitFor(deadlineCtx, "the extensions' /next", func() bool {
		for _, e := range waitFor {
			if e.state != stateExited && (e.state != stateReady || !e.nextAt.After(start)) {
				return false
			}
		}
		return true
	})
	s.mu.Lock()
	res.Next = res.RuntimeDone
	for _, e := range waitFor {
		if e.nextAt.After(res.Next) {
			res.Next = e.nextAt
		}
	}
	s.mu.Unlock()
	if crash := s.Crash(); crash != nil {
		return res, crash
	}
	if err != nil && ctx.Err() == nil {
		res.HeldPastDeadline = true
		res.Next = time.Now()
		status, errorType = "timeout", "Extension.TimedOut"
	}
	res.PostRuntime = max(res.Next.Sub(res.RuntimeDone), 0)

	total := runtimeMs + ms(res.PostRuntime)
	metrics := map[string]any{"durationMs": total}
	if !managed {
		metrics["billedDurationMs"] = int64(math.Ceil(total))
		metrics["memorySizeMB"] = s.cfg.MemoryMB
		metrics["maxMemoryUsedMB"] = s.memoryUsedMB()
	}
	for k, v := range coldStart {
		metrics[k] = v
	}
	res.Report = map[string]any{"requestId": res.RequestID, "status": status, "metrics": metrics}
	if errorType != "" {
		res.Report["errorType"] = errorType
	}
	s.emitPlatform("platform.report", res.Report)

	if res.HeldPastDeadline || fn.Outcome == Crash || fn.Outcome == Timeout {
		reason := "failure"
		if status == "timeout" {
			reason = "timeout"
		}
		sd, err := s.Shutdown(ctx, reason)
		res.Reset = &sd
		return res, err
	}
	if s.cfg.BeforeFreeze != nil {
		s.cfg.BeforeFreeze(res.RequestID)
	}
	if !managed {
		s.freeze()
	}
	return res, nil
}

// runFunction writes the scripted lines, spread over fn.Duration.
func (s *Sandbox) runFunction(ctx context.Context, fn Function, requestID string, deadline time.Time) []Line {
	messages := fn.Messages
	if messages == nil {
		messages = make([]string, fn.Lines)
		for i := range messages {
			msg := fmt.Sprintf("line %d of %s", i, requestID)
			if pad := fn.LineBytes - len(msg) - 1; pad > 0 {
				msg += " " + strings.Repeat("x", pad)
			}
			messages[i] = msg
		}
	}
	level := fn.Level
	if level == "" {
		level = "INFO"
	}
	start := time.Now()
	lines := make([]Line, 0, len(messages))
	for i, msg := range messages {
		if fn.Duration > 0 && len(messages) > 1 {
			due := start.Add(fn.Duration * time.Duration(i) / time.Duration(len(messages)-1))
			if !sleepCtx(ctx, time.Until(due)) || time.Now().After(deadline) {
				break
			}
		}
		// The runtime stamps the record when it writes it; Lambda stamps the
		// event when it captures it, CaptureLag later.
		now := time.Now()
		captured := now.Add(s.cfg.CaptureLag)
		stamp := now.UTC().Format(TimeLayout)
		if s.cfg.LogFormat == "json" {
			rec := map[string]any{}
			for k, v := range fn.Fields {
				rec[k] = v
			}
			rec["timestamp"], rec["level"], rec["message"] = stamp, level, msg
			if requestID != "" {
				rec["requestId"] = requestID
			}
			obj, _ := json.Marshal(rec)
			s.emit("function", captured, "", string(obj))
			lines = append(lines, Line{Time: now.UTC().Truncate(time.Millisecond), Text: string(obj)})
			continue
		}
		text := stamp + "\t" + requestID + "\t" + level + "\t" + msg + "\n"
		if requestID == "" {
			// Init has no request: the runtime's prefix has no ID field.
			text = stamp + "\t" + level + "\t" + msg + "\n"
		}
		ev := s.emit("function", captured, text, "")
		lines = append(lines, Line{Time: ev.time.Truncate(time.Millisecond), Text: strings.TrimSuffix(text, "\n")})
	}
	return lines
}

// memoryUsedMB reads the extensions' peak resident memory (VmHWM).
func (s *Sandbox) memoryUsedMB() int64 {
	var total int64
	for _, pid := range s.PIDs() {
		total += vmHWMKiB(pid)
	}
	return total/1024 + 30 // plus a nominal runtime
}

func (s *Sandbox) usable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.crash != nil {
		return s.crash
	}
	if s.ended {
		return ErrEnded
	}
	return nil
}

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
	// PeakRSSBytes is the largest extension's peak resident memory.
	PeakRSSBytes int64
}

// Shutdown thaws, flushes queued telemetry (at most 1 s), sends SHUTDOWN
// with a deadline ShutdownTimeout away, keeps delivering telemetry, and
// SIGKILLs whatever still runs at the deadline (contract §1.5, §5.3).
func (s *Sandbox) Shutdown(ctx context.Context, reason string) (ShutdownResult, error) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return ShutdownResult{}, ErrEnded
	}
	s.ended = true
	s.mu.Unlock()
	s.thaw()
	s.flushTelemetry(time.Second)

	start := time.Now()
	res := ShutdownResult{Reason: reason, Deadline: start.Add(s.cfg.ShutdownTimeout)}
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
			for _, k := range exts {
				_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
			}
			<-e.exited
		case <-ctx.Done():
			s.Close()
			return res, ctx.Err()
		}
	}
	s.mu.Lock()
	for _, e := range exts {
		if d := e.exitedAt.Sub(start); d > res.Duration {
			res.Duration = d
		}
		res.PeakRSSBytes = max(res.PeakRSSBytes, e.maxRSS.Load())
		res.ExitCode = e.cmd.ProcessState.ExitCode()
	}
	s.mu.Unlock()
	s.Close()
	return res, nil
}

// ErrNotSnapStart is returned by Restore outside ModeSnapStart, and
// ErrRestored when the snapshot was already restored: an environment is
// restored from its snapshot once.
var (
	ErrNotSnapStart = errors.New("sandbox: only a SnapStart environment is restored")
	ErrRestored     = errors.New("sandbox: the snapshot was already restored")
)

// Restore resumes a SnapStart snapshot: it thaws and emits restoreStart,
// restoreRuntimeDone and restoreReport, then leaves the environment running
// for the first invocation. Extensions get no event (contract §4). Invoke
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
