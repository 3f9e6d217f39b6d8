package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/lambda-loki/grafana-loki-extension/internal/wait"
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
	// Raw writes Messages to stdout as they are, without the runtime's
	// prefix, as a structured logger that prints its own JSON does
	// (Powertools for AWS Lambda, pino). Text log format only: with the
	// JSON format the lines are records as usual.
	Raw bool
	// Payload is the invocation's event, what the runtime process of
	// Config.Runtime gets from /next ({} when empty). The fields above are
	// the script's and unused then.
	Payload []byte
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
	// TraceHeader is the invocation's X-Ray trace header under active
	// tracing (Config.ActiveTracing), "" otherwise.
	TraceHeader string
	Deadline    time.Time
	// Lines are the lines the function wrote during the invocation, as
	// an extension is expected to ship them; with Config.Runtime, those
	// its output made (on Managed Instances only while the invocation was
	// the only one running).
	Lines []Line
	// Response is what the runtime process posted: its response, or with
	// Status "error" its error.
	Response []byte
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
	// Reset is the shutdown phase that followed a failure: the runtime's
	// crash or timeout, an extension held past the deadline or failed. The
	// next Invoke initialises a new environment.
	Reset *ShutdownResult
}

// invocation is one Invoke on its way through the phases.
type invocation struct {
	fn    Function
	res   InvokeResult
	start time.Time
	// waitFor are the extensions given the INVOKE: the invocation ends when
	// each is back in /next.
	waitFor []*extension
	// coldStart holds the report's metrics of the first invocation after an
	// init (initDurationMs) or a restore (restoreDurationMs).
	coldStart map[string]any
	// status and errorType are runtimeDone's, then the report's.
	status, errorType string
	runtimeMs         float64
	// reset is why the invocation ends in a reset ("" for none): the
	// SHUTDOWN reason.
	reset string
	// failure is the extension failure that ended the invocation, if any.
	failure *ExtensionError
	// answered is closed when the runtime process has answered (Config.Runtime).
	answered chan struct{}
}

// Invoke runs one invocation the way Lambda does: thaw, platform.start and
// INVOKE to the extensions, the function, platform.runtimeDone, wait until
// every extension is back in /next (bounded by the deadline),
// platform.report, then freeze, or reset after a failure.
//
// When an extension fails during the invocation (it exits outside SHUTDOWN:
// Extension.Crash, or after an exit/error), the invocation fails as in
// Lambda: its report says status "error" with the failure's type, the
// environment is reset (the other extensions get SHUTDOWN with reason
// "failure"), and Invoke returns the result, with Reset set, together with
// the *ExtensionError. The Sandbox stays usable: the next Invoke
// initialises a new environment first (a suppressed init, phase "invoke").
// A failure between invocations is reset by the next Invoke, which then
// succeeds or fails on its own; Failures lists both kinds.
func (s *Sandbox) Invoke(ctx context.Context, fn Function) (InvokeResult, error) {
	if err := s.prepare(ctx); err != nil {
		return InvokeResult{}, err
	}
	inv := s.beginInvoke(fn)
	s.runRuntime(ctx, inv)
	s.awaitNext(ctx, inv)
	s.report(inv)
	return s.resetOrFreeze(ctx, inv)
}

// prepare makes the environment ready for an invocation: a failure left
// over is reset, a reset environment initialised anew, a snapshot restored.
func (s *Sandbox) prepare(ctx context.Context) error {
	s.mu.Lock()
	ended, failed, needsInit, runtimeFailed := s.ended, s.failed, s.needsInit, s.runtimeFailed
	s.mu.Unlock()
	switch {
	case ended:
		return ErrEnded
	case failed != nil && s.cfg.Mode == ModeManagedInstances:
		_, _ = s.reset(ctx, "failure") // terminates it
		return failed
	case runtimeFailed != nil && s.cfg.Mode == ModeManagedInstances:
		_, _ = s.reset(ctx, "failure")
		return runtimeFailed
	case failed != nil || runtimeFailed != nil:
		// Lambda resets as soon as an extension fails; the emulator does it
		// when the environment is next needed.
		if _, err := s.reset(ctx, "failure"); err != nil {
			return err
		}
		needsInit = true
	}
	if needsInit {
		if err := s.reinit(ctx); err != nil {
			return err
		}
	}
	if s.cfg.Mode == ModeSnapStart && !s.isRestored() {
		// A SnapStart version is only ever invoked in an environment
		// restored from its snapshot (docs/lambda-runtime-contract.md#snapstart).
		return s.Restore(ctx)
	}
	return nil
}

// beginInvoke thaws the environment, emits platform.start and hands INVOKE
// to every extension registered for it.
func (s *Sandbox) beginInvoke(fn Function) *invocation {
	s.thaw()
	inv := &invocation{fn: fn, start: time.Now(), status: "success"}
	inv.res = InvokeResult{RequestID: uuid.NewString(), Status: "success", Deadline: inv.start.Add(s.cfg.FunctionTimeout)}
	start := map[string]any{"requestId": inv.res.RequestID, "version": "$LATEST"}
	if s.cfg.ActiveTracing {
		inv.res.TraceHeader = traceHeader(inv.start, inv.res.RequestID)
		start["tracing"] = map[string]string{"spanId": strings.ReplaceAll(inv.res.RequestID, "-", "")[:16], "type": "X-Amzn-Trace-Id", "value": inv.res.TraceHeader}
	}
	s.emitPlatform("platform.start", start)
	if s.cfg.Mode == ModeManagedInstances {
		return inv // extensions get no INVOKE there
	}
	payload := s.invokeEvent(inv)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.exts {
		if e.invoke && e.state != stateExited {
			e.deliver(payload)
			inv.waitFor = append(inv.waitFor, e)
		}
	}
	s.invokes++
	if s.invokes == 1 {
		// The first invocation's REPORT carries the cold start: the init,
		// or with SnapStart the restore, since init ran at publish time.
		if s.cfg.Mode == ModeSnapStart {
			inv.coldStart = map[string]any{"restoreDurationMs": ms(s.restoreDuration)}
		} else {
			inv.coldStart = map[string]any{"initDurationMs": ms(s.initDuration)}
		}
	}
	return inv
}

// invokeEvent is the INVOKE payload of an invocation. tracing is omitted
// without a trace header, as Lambda does
// (docs/lambda-runtime-contract.md#next-and-its-events).
func (s *Sandbox) invokeEvent(inv *invocation) []byte {
	event := map[string]any{
		"eventType": "INVOKE", "deadlineMs": inv.res.Deadline.UnixMilli(), "requestId": inv.res.RequestID,
		"invokedFunctionArn": s.functionARN(),
	}
	if s.cfg.Alias != "" {
		event["invokedFunctionArn"] = event["invokedFunctionArn"].(string) + ":" + s.cfg.Alias
	}
	if inv.res.TraceHeader != "" {
		event["tracing"] = map[string]string{"type": "X-Amzn-Trace-Id", "value": inv.res.TraceHeader}
	}
	payload, _ := json.Marshal(event)
	return payload
}

// traceHeader makes an X-Ray trace header for an invocation: version 1,
// the start time in hex seconds, 24 hex digits of the request ID.
func traceHeader(start time.Time, requestID string) string {
	id := strings.ReplaceAll(requestID, "-", "")
	return "Root=1-" + strconv.FormatInt(start.Unix(), 16) + "-" + id[:24] + ";Parent=" + id[16:32] + ";Sampled=1"
}

// runRuntime runs the function, the runtime process or the script, to its
// outcome and emits platform.runtimeDone, as Lambda does when the runtime
// answers.
func (s *Sandbox) runRuntime(ctx context.Context, inv *invocation) {
	if s.cfg.Runtime != nil {
		s.runProcess(ctx, inv)
	} else {
		s.runScript(ctx, inv)
	}
	inv.res.Status = inv.status
	inv.res.RuntimeDone = time.Now()
	inv.runtimeMs = ms(inv.res.RuntimeDone.Sub(inv.start))
	if s.cfg.Mode == ModeManagedInstances {
		return // no runtimeDone there
	}
	rec := map[string]any{"requestId": inv.res.RequestID, "status": inv.status,
		"metrics": map[string]any{"durationMs": inv.runtimeMs, "producedBytes": 0},
		"spans": []map[string]any{
			{"name": "responseLatency", "start": inv.start.UTC().Format(TimeLayout), "durationMs": inv.runtimeMs},
			{"name": "responseDuration", "start": inv.res.RuntimeDone.UTC().Format(TimeLayout), "durationMs": 0.0},
		}}
	if inv.errorType != "" {
		rec["errorType"] = inv.errorType
	}
	s.emitPlatform("platform.runtimeDone", rec)
}

// runScript runs the scripted function to its outcome.
func (s *Sandbox) runScript(ctx context.Context, inv *invocation) {
	inv.res.Lines = s.runFunction(ctx, inv.fn, inv.res.RequestID, inv.res.Deadline)
	switch inv.fn.Outcome {
	case Error:
		inv.status, inv.errorType = "error", "Function.Error"
	case Crash:
		inv.status, inv.errorType, inv.reset = "failure", "Runtime.ExitError", "failure"
	case Timeout:
		wait.Sleep(ctx, time.Until(inv.res.Deadline))
		inv.status, inv.errorType, inv.reset = "timeout", "Sandbox.Timeout", "timeout"
	}
}

// awaitNext waits until every extension given the INVOKE is back in /next,
// at most until the deadline; the environment freezes only then. An
// extension still busy at the deadline times the invocation out; one that
// fails fails it.
func (s *Sandbox) awaitNext(ctx context.Context, inv *invocation) {
	if inv.reset != "" {
		// After a timeout or a crash Lambda resets at once; it waits for no one.
		inv.waitFor = nil
	}
	deadlineCtx, cancel := context.WithDeadline(ctx, inv.res.Deadline)
	defer cancel()
	// An extension is done when it is back in /next after this INVOKE began.
	err := s.waitFor(deadlineCtx, "the extensions' /next", func() bool {
		for _, e := range inv.waitFor {
			if e.state != stateExited && (e.state != stateReady || !e.nextAt.After(inv.start)) {
				return false
			}
		}
		return true
	})
	s.mu.Lock()
	inv.res.Next = inv.res.RuntimeDone
	for _, e := range inv.waitFor {
		if e.nextAt.After(inv.res.Next) {
			inv.res.Next = e.nextAt
		}
	}
	s.mu.Unlock()
	var failed *ExtensionError
	var runtimeFailed *RuntimeError
	switch {
	case errors.As(err, &runtimeFailed):
		// The runtime exited after it answered: Lambda resets at once.
		s.mu.Lock()
		s.runtimeFailed = nil
		s.mu.Unlock()
		inv.res.Next = time.Now()
		inv.reset = "failure"
	case errors.As(err, &failed):
		// Lambda fails the invocation and resets at once
		// (docs/lambda-runtime-contract.md#reset-after-a-failure).
		inv.failure = failed
		inv.res.Next = time.Now()
		inv.status, inv.errorType, inv.reset = "error", failed.Type, "failure"
	case err != nil && ctx.Err() == nil:
		inv.res.HeldPastDeadline = true
		inv.res.Next = time.Now()
		inv.status, inv.errorType, inv.reset = "timeout", "Extension.TimedOut", "timeout"
	}
	inv.res.PostRuntime = max(inv.res.Next.Sub(inv.res.RuntimeDone), 0)
}

// report emits platform.report: the runtime's time plus the extensions'
// post-runtime time, billed to the next millisecond.
func (s *Sandbox) report(inv *invocation) {
	total := inv.runtimeMs + ms(inv.res.PostRuntime)
	metrics := map[string]any{"durationMs": total}
	if s.cfg.Mode != ModeManagedInstances {
		metrics["billedDurationMs"] = int64(math.Ceil(total))
		metrics["memorySizeMB"] = s.cfg.MemoryMB
		metrics["maxMemoryUsedMB"] = s.memoryUsedMB()
	}
	for k, v := range inv.coldStart {
		metrics[k] = v
	}
	inv.res.Report = map[string]any{"requestId": inv.res.RequestID, "status": inv.status, "metrics": metrics}
	if inv.errorType != "" {
		inv.res.Report["errorType"] = inv.errorType
	}
	s.emitPlatform("platform.report", inv.res.Report)
}

// resetOrFreeze ends the invocation: a failed one resets the environment
// (SHUTDOWN with the reason), any other freezes it until the next.
func (s *Sandbox) resetOrFreeze(ctx context.Context, inv *invocation) (InvokeResult, error) {
	if inv.reset != "" {
		sd, err := s.reset(ctx, inv.reset)
		inv.res.Reset = &sd
		if err == nil && inv.failure != nil {
			err = inv.failure
		}
		return inv.res, err
	}
	if s.cfg.BeforeFreeze != nil {
		s.cfg.BeforeFreeze(inv.res.RequestID)
	}
	if s.cfg.Mode != ModeManagedInstances {
		s.freeze()
	}
	return inv.res, nil
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
			if !wait.Sleep(ctx, time.Until(due)) || time.Now().After(deadline) {
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
		switch {
		case fn.Raw:
			text = msg + "\n"
		case requestID == "":
			// Init has no request: the runtime's prefix has no ID field.
			text = stamp + "\t" + level + "\t" + msg + "\n"
		}
		ev := s.emit("function", captured, text, "")
		line := Line{Time: ev.time.Truncate(time.Millisecond), Text: strings.TrimSuffix(text, "\n")}
		if obj := jsonObject(line.Text); obj != "" {
			line.Time = ownTimestamp(obj, ev.time) // a raw JSON line's own timestamp
		}
		lines = append(lines, line)
	}
	return lines
}

// memoryUsedMB reads the extensions' and the runtime process's peak
// resident memory (VmHWM); a scripted runtime counts a nominal 30 MB.
func (s *Sandbox) memoryUsedMB() int64 {
	var total int64
	for _, pid := range s.PIDs() {
		total += vmHWMKiB(pid)
	}
	if pid := s.RuntimePID(); pid != 0 {
		return total/1024 + vmHWMKiB(pid)/1024
	}
	return total/1024 + 30
}

func (s *Sandbox) usable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return s.failed
	}
	if s.ended {
		return ErrEnded
	}
	return nil
}
