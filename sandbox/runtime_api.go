package sandbox

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"
)

// maxResponseBytes is Lambda's limit on a synchronous invocation's
// response (6 MB).
const maxResponseBytes = 6 << 20

// The Runtime API (docs/lambda-runtime-contract.md#runtime-api), served to
// the runtime process of Config.Runtime on the same address as the
// Extensions API.
func (s *Sandbox) runtimeRoutes(mux *http.ServeMux) {
	const base = "/2018-06-01/runtime"
	mux.HandleFunc("GET "+base+"/invocation/next", s.handleRuntimeNext)
	mux.HandleFunc("POST "+base+"/invocation/{id}/response", func(w http.ResponseWriter, r *http.Request) { s.handleRuntimeAnswer(w, r, false) })
	mux.HandleFunc("POST "+base+"/invocation/{id}/error", func(w http.ResponseWriter, r *http.Request) { s.handleRuntimeAnswer(w, r, true) })
	mux.HandleFunc("POST "+base+"/init/error", s.handleRuntimeInitError)
	mux.HandleFunc("GET "+base+"/restore/next", s.handleRestoreNext)
}

// stateError is RAPID's answer to a call the runtime's state does not
// allow: 403 InvalidStateTransition.
func stateError(w http.ResponseWriter, from, to string) {
	apiError(w, http.StatusForbidden, "InvalidStateTransition",
		"State transition from %s to %s failed for runtime. Error: State transition is not allowed", from, to)
}

// accepted is RAPID's 202 {"status":"OK"}.
func accepted(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte(`{"status":"OK"}`))
}

// runtimeState names the runtime's state in RAPID's messages; s.mu must be
// held.
func (s *Sandbox) runtimeState() string {
	switch rt := s.rt; {
	case rt == nil:
		return "Idle"
	case !rt.ready:
		return "Started"
	case len(rt.inflight) > 0:
		return "Invoking"
	}
	return "Ready"
}

// handleRuntimeNext is GET /invocation/next: the first call ends the
// runtime's init; each blocks until an invocation is queued and answers it
// with its event and Lambda's headers. Outside Managed Instances a runtime
// that has not answered its invocation may not ask for another.
func (s *Sandbox) handleRuntimeNext(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	rt := s.rt
	if rt == nil || rt.initErr != nil || (len(rt.inflight) > 0 && s.cfg.Mode != ModeManagedInstances) {
		state := s.runtimeState()
		s.mu.Unlock()
		stateError(w, state, "Ready")
		return
	}
	rt.ready = true
	rt.waiting++
	s.broadcast()
	var inv *invocation
	for {
		if len(rt.queue) > 0 {
			inv = rt.queue[0]
			rt.queue = rt.queue[1:]
			rt.inflight[inv.res.RequestID] = inv
			break
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-r.Context().Done():
		case <-rt.exited:
		}
		s.mu.Lock()
		if r.Context().Err() != nil || isClosed(rt.exited) {
			break
		}
	}
	rt.waiting--
	s.broadcast()
	s.mu.Unlock()
	if inv == nil {
		return // the runtime went away while it waited
	}
	s.renderInvoke(w, inv)
}

// renderInvoke writes an invocation as /next answers it: the event as the
// body, and the headers RAPID sets (none empty: no client context or
// Cognito identity here, no trace ID without active tracing).
func (s *Sandbox) renderInvoke(w http.ResponseWriter, inv *invocation) {
	h := w.Header()
	h.Set("Lambda-Runtime-Aws-Request-Id", inv.res.RequestID)
	h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(inv.res.Deadline.UnixMilli(), 10))
	h.Set("Lambda-Runtime-Invoked-Function-Arn", s.functionARN())
	if inv.res.TraceHeader != "" {
		h.Set("Lambda-Runtime-Trace-Id", inv.res.TraceHeader)
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	payload := inv.fn.Payload
	if len(payload) == 0 {
		payload = []byte("{}")
	}
	_, _ = w.Write(payload)
}

func (s *Sandbox) functionARN() string {
	return "arn:aws:lambda:" + s.cfg.Region + ":123456789012:function:" + s.cfg.FunctionName
}

// handleRuntimeAnswer is POST /invocation/{id}/response and /error: 403
// InvalidStateTransition when the runtime holds no invocation, 400
// InvalidRequestID for an ID it does not hold (or has answered), 413 for a
// response over 6 MB (the invocation then fails), else 202.
func (s *Sandbox) handleRuntimeAnswer(w http.ResponseWriter, r *http.Request, isError bool) {
	to := "InvocationResponse"
	if isError {
		to = "InvocationErrorResponse"
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxResponseBytes+1))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rt == nil || len(s.rt.inflight) == 0 {
		stateError(w, s.runtimeState(), to)
		return
	}
	inv := s.rt.inflight[r.PathValue("id")]
	if inv == nil {
		apiError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
		return
	}
	delete(s.rt.inflight, inv.res.RequestID)
	inv.res.Response = body
	switch {
	case err != nil:
		inv.status, inv.errorType = "error", "Runtime.TruncatedResponse"
	case len(body) > maxResponseBytes:
		inv.res.Response = nil
		inv.status, inv.errorType = "error", "Function.ResponseSizeTooLarge"
		apiError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "Exceeded maximum allowed payload size (%d bytes).", maxResponseBytes)
	case isError:
		inv.status, inv.errorType = "error", r.Header.Get("Lambda-Runtime-Function-Error-Type")
		if inv.errorType == "" {
			inv.errorType = "Function.Error"
		}
	}
	close(inv.answered)
	s.broadcast()
	if len(body) <= maxResponseBytes {
		accepted(w)
	}
}

// handleRuntimeInitError is POST /init/error: allowed before the runtime's
// first /next, it fails the init with the type and message reported.
func (s *Sandbox) handleRuntimeInitError(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ErrorMessage string `json:"errorMessage"`
	}
	data, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	_ = json.Unmarshal(data, &body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rt == nil || s.rt.ready || s.rt.initErr != nil {
		stateError(w, s.runtimeState(), "InitError")
		return
	}
	s.rt.initErr = &RuntimeError{Type: "Runtime.InitError", ReportedType: r.Header.Get("Lambda-Runtime-Function-Error-Type"), Message: body.ErrorMessage}
	s.broadcast()
	accepted(w)
}

// handleRestoreNext is GET /restore/next, a SnapStart runtime's last call
// before the snapshot: it ends the runtime's init and returns at the
// restore (200, no body).
func (s *Sandbox) handleRestoreNext(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	rt := s.rt
	if rt == nil || rt.ready || s.cfg.Mode != ModeSnapStart {
		state := s.runtimeState()
		s.mu.Unlock()
		stateError(w, state, "RestoreReady")
		return
	}
	rt.ready, rt.restoring = true, true
	s.broadcast()
	s.mu.Unlock()
	select {
	case <-rt.restore:
		w.WriteHeader(http.StatusOK)
	case <-r.Context().Done():
	case <-rt.exited:
	}
}

// restoreRuntime lets a runtime waiting in /restore/next go, and waits
// (at most until ctx ends) for it to be back in /invocation/next, which
// ends the restore's runtime part.
func (s *Sandbox) restoreRuntime(ctx context.Context) {
	s.mu.Lock()
	rt := s.rt
	if rt == nil || !rt.restoring {
		s.mu.Unlock()
		return
	}
	rt.restoring = false
	close(rt.restore)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = s.waitFor(ctx, "the runtime's /next after the restore", func() bool { return rt.waiting > 0 })
}

// runProcess hands the invocation to the runtime's /next and waits for its
// answer, at most until the deadline: a deadline passed times the
// invocation out, an exit fails it; both reset the environment.
func (s *Sandbox) runProcess(ctx context.Context, inv *invocation) {
	inv.answered = make(chan struct{})
	s.mu.Lock()
	rt := s.rt
	if rt == nil {
		// No process to run it (its init failed): a failure, and a reset.
		s.mu.Unlock()
		inv.status, inv.errorType, inv.reset = "failure", "Runtime.ExitError", "failure"
		return
	}
	rt.queue = append(rt.queue, inv)
	rt.running = append(rt.running, inv)
	s.broadcast()
	s.mu.Unlock()
	timer := time.NewTimer(time.Until(inv.res.Deadline))
	defer timer.Stop()
	select {
	case <-inv.answered:
	case <-rt.exited:
		inv.status, inv.errorType, inv.reset = "failure", "Runtime.ExitError", "failure"
	case <-timer.C:
		inv.status, inv.errorType, inv.reset = "timeout", "Sandbox.Timeout", "timeout"
	case <-ctx.Done():
		inv.status, inv.errorType, inv.reset = "timeout", "Sandbox.Timeout", "timeout"
	}
	// What the runtime wrote before it answered is the invocation's, and
	// is captured before runtimeDone.
	s.syncRuntimeOutput()
	s.mu.Lock()
	defer s.mu.Unlock()
	rt.queue = removeInvocation(rt.queue, inv)
	rt.running = removeInvocation(rt.running, inv)
	delete(rt.inflight, inv.res.RequestID)
	if inv.reset == "failure" && s.runtimeFailed != nil {
		s.runtimeFailed = nil // this invocation reports it and resets
	}
}

func removeInvocation(queue []*invocation, inv *invocation) []*invocation {
	for i, q := range queue {
		if q == inv {
			return append(queue[:i:i], queue[i+1:]...)
		}
	}
	return queue
}
