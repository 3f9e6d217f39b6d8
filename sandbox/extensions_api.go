package sandbox

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Extension states, after RAPID's (docs/lambda-runtime-contract.md#init-error-and-exit-error).
type extState int

const (
	stateLaunched   extState = iota // exec'd, not registered
	stateRegistered                 // registered, first /next not yet called
	stateReady                      // waiting in /next
	stateRunning                    // handling an event
	stateExited
)

func (st extState) String() string {
	return [...]string{"Launched", "Registered", "Ready", "Running", "Exited"}[st]
}

// extension is one launched (external) extension.
type extension struct {
	name   string
	cmd    *exec.Cmd
	out    *output
	id     string
	state  extState
	invoke bool // registered for INVOKE
	stop   bool // registered for SHUTDOWN
	// events carries the next event to the /next handler; buffered so that
	// SHUTDOWN can be handed over while the extension is still busy.
	events       chan []byte
	nextAt       time.Time // when it last called /next
	shuttingDown bool
	reported     *ExtensionError
	exited       chan struct{}
	exitedAt     time.Time
	exitErr      error
	// maxRSS is the highest VmHWM seen while the extension ran.
	maxRSS atomic.Int64
}

// rssSampleEvery is how often sampleRSS reads the extension's high-water mark.
const rssSampleEvery = 5 * time.Millisecond

// sampleRSS follows the extension's peak resident memory until it exits.
// The kernel's VmHWM is a high-water mark, so sampling misses at most the
// last few milliseconds. The exit status's ru_maxrss cannot be used: after a
// vfork-style exec it includes the RSS of the parent (the test process).
func (e *extension) sampleRSS() {
	t := time.NewTicker(rssSampleEvery)
	defer t.Stop()
	for {
		if kb := vmHWMKiB(e.cmd.Process.Pid); kb > 0 {
			e.maxRSS.Store(max(e.maxRSS.Load(), kb*1024))
		}
		select {
		case <-e.exited:
			return
		case <-t.C:
		}
	}
}

// vmHWMKiB reads a process's peak resident set size in KiB, 0 if unknown.
func vmHWMKiB(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb
		}
	}
	return 0
}

const maxExtensions = 10

func (s *Sandbox) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2020-01-01/extension/register", s.handleRegister)
	mux.HandleFunc("GET /2020-01-01/extension/event/next", s.handleNext)
	mux.HandleFunc("POST /2020-01-01/extension/init/error", func(w http.ResponseWriter, r *http.Request) { s.handleError(w, r, "init") })
	mux.HandleFunc("POST /2020-01-01/extension/exit/error", func(w http.ResponseWriter, r *http.Request) { s.handleError(w, r, "exit") })
	mux.HandleFunc("PUT /2022-07-01/telemetry", s.handleSubscribe)
	s.runtimeRoutes(mux)
	return mux
}

// apiError writes RAPID's error answer: 403 for every client error
// (docs/lambda-runtime-contract.md#error-answers).
func apiError(w http.ResponseWriter, status int, errorType, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"errorMessage": fmt.Sprintf(format, args...), "errorType": errorType})
}

func (s *Sandbox) handleRegister(w http.ResponseWriter, r *http.Request) {
	name := r.Header.Get("Lambda-Extension-Name")
	if name == "" {
		apiError(w, 403, "Extension.InvalidExtensionName", "Empty extension name")
		return
	}
	var body struct {
		Events            []string `json:"events"`
		ConfigurationKeys []string `json:"configurationKeys"`
	}
	if data, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20)); len(data) > 0 {
		if err := json.Unmarshal(data, &body); err != nil {
			apiError(w, 403, "InvalidRequestFormat", "%v", err)
			return
		}
	}
	if len(body.ConfigurationKeys) > 0 {
		apiError(w, 403, "InvalidRequestFormat", "configurationKeys are deprecated; use environment variables instead")
		return
	}
	invoke, stop := false, false
	for _, ev := range body.Events {
		switch ev {
		case "INVOKE":
			if s.cfg.Mode == ModeManagedInstances {
				apiError(w, 403, "Extension.InvalidEventType", "INVOKE: ErrorInvalidEventType")
				return
			}
			invoke = true
		case "SHUTDOWN":
			stop = true
		default:
			apiError(w, 403, "Extension.InvalidEventType", "%s: ErrorInvalidEventType", ev)
			return
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var ext *extension
	for _, e := range s.exts {
		if e.name == name {
			ext = e
		}
	}
	switch {
	case ext == nil && s.registrationClosed:
		apiError(w, 403, "Extension.RegistrationClosed", "Extension registration closed already")
		return
	case ext == nil && stop:
		// A name that matches no launched file is an internal extension,
		// which may not have SHUTDOWN (docs/lambda-runtime-contract.md#registration).
		apiError(w, 403, "Extension.InvalidEventType", "SHUTDOWN: ShutdownEventNotSupportedForInternalExtension")
		return
	case ext == nil && len(s.exts)+s.internal >= maxExtensions:
		apiError(w, 403, "Extension.TooManyExtensions", "Extension limit (%d) reached", maxExtensions)
		return
	case ext != nil && ext.state != stateLaunched:
		apiError(w, 403, "Extension.InvalidExtensionState", "State transition from %s to Registered failed for extension %s. Error: State transition is not allowed", ext.state, name)
		return
	}
	id := uuid.NewString()
	if ext == nil {
		s.internal++
	} else {
		ext.id, ext.invoke, ext.stop, ext.state = id, invoke, stop, stateRegistered
		s.broadcast()
	}
	w.Header().Set("Lambda-Extension-Identifier", id)
	w.Header().Set("Content-Type", "application/json")
	resp := map[string]string{"functionName": s.cfg.FunctionName, "functionVersion": "$LATEST", "handler": "index.handler"}
	if strings.Contains(r.Header.Get("Lambda-Extension-Accept-Feature"), "accountId") {
		resp["accountId"] = "123456789012"
	}
	_ = json.NewEncoder(w).Encode(resp)
}

// identify checks the identifier header and returns its extension, or
// writes the contract's error and returns nil. s.mu must be held.
func (s *Sandbox) identify(w http.ResponseWriter, r *http.Request) *extension {
	id := r.Header.Get("Lambda-Extension-Identifier")
	if id == "" {
		apiError(w, 403, "Extension.MissingExtensionIdentifier", "Missing Lambda-Extension-Identifier header")
		return nil
	}
	if _, err := uuid.Parse(id); err != nil {
		apiError(w, 403, "Extension.InvalidExtensionIdentifier", "Invalid Lambda-Extension-Identifier")
		return nil
	}
	for _, e := range s.exts {
		if e.id == id {
			return e
		}
	}
	apiError(w, 403, "Extension.UnknownExtensionIdentifier", "Unknown extension %s", id)
	return nil
}

func (s *Sandbox) handleNext(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	ext := s.identify(w, r)
	if ext == nil {
		s.mu.Unlock()
		return
	}
	if s.nextCalls == nil {
		s.nextCalls = map[string]int{}
	}
	s.nextCalls[ext.name]++
	call := s.nextCalls[ext.name]
	s.mu.Unlock()
	if hook := s.cfg.NextFailures; hook != nil {
		if status := hook(ext.name, call); status != 0 {
			// RAPID's error shape: errorType is the status text without spaces
			// (500: InternalServerError, "Internal Server Error").
			text := http.StatusText(status)
			apiError(w, status, strings.ReplaceAll(text, " ", ""), "%s", text)
			return
		}
	}
	s.mu.Lock()
	if ext.state != stateRegistered && ext.state != stateRunning {
		s.mu.Unlock()
		apiError(w, 403, "Extension.InvalidExtensionState", "State transition from %s to Ready failed for extension %s", ext.state, ext.name)
		return
	}
	ext.state = stateReady
	ext.nextAt = time.Now()
	s.broadcast()
	s.mu.Unlock()

	select {
	case payload := <-ext.events:
		s.mu.Lock()
		ext.state = stateRunning
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(payload)
	case <-r.Context().Done():
		// The extension went away while waiting (killed at shutdown).
	}
}

func (s *Sandbox) handleError(w http.ResponseWriter, r *http.Request, kind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ext := s.identify(w, r)
	if ext == nil {
		return
	}
	errType := r.Header.Get("Lambda-Extension-Function-Error-Type")
	if errType == "" {
		apiError(w, 403, "Extension.MissingHeader", "Lambda-Extension-Function-Error-Type not found")
		return
	}
	allowed := ext.state == stateRegistered
	if kind == "exit" {
		allowed = allowed || ext.state == stateReady || ext.state == stateRunning
	}
	if !allowed {
		apiError(w, 403, "Extension.InvalidExtensionState", "State transition from %s to %s failed for extension %s", ext.state, map[string]string{"init": "InitError", "exit": "ExitError"}[kind], ext.name)
		return
	}
	var body struct {
		ErrorMessage string `json:"errorMessage"`
	}
	data, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	_ = json.Unmarshal(data, &body)
	typ := "Extension.InitError"
	if kind == "exit" {
		typ = "Extension.ExitError"
	}
	ext.reported = &ExtensionError{Extension: ext.name, Type: typ, ReportedType: errType, Message: body.ErrorMessage}
	s.broadcast()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write([]byte(`{"status":"OK"}`))
}

// deliver hands an event to an extension's /next, now or when it next asks.
func (e *extension) deliver(payload []byte) {
	select {
	case e.events <- payload:
	default:
		// An undelivered event is pending already; the newer one wins, as
		// SHUTDOWN supersedes an INVOKE the extension never picked up.
		select {
		case <-e.events:
		default:
		}
		e.events <- payload
	}
}
