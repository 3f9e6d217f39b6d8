// Package sandbox emulates a Lambda execution environment for extensions:
// the Extensions API, the Telemetry API with real delivery, the freeze
// between invocations, SHUTDOWN with its deadline and the reset after a
// failure, as the runtime contract describes them
// (docs/lambda-runtime-contract.md#what-a-faithful-emulator-does).
//
// The extensions are real processes, exec'd from a directory as Lambda does
// from /opt/extensions. The function is either scripted inside the emulator
// (it writes log lines, finishes, and the platform events follow), or a real
// runtime process (Config.Runtime) served the Runtime API, frozen and reset
// with the extensions. Every step is measured the way Lambda bills it.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ExtensionError is an extension's failure as Lambda reports it: a crash
// (Extension.Crash: an exit outside SHUTDOWN without a report), or an init
// or exit error it reported itself before it exited.
type ExtensionError struct {
	Extension string
	// Type is Extension.Crash, Extension.InitError or Extension.ExitError.
	Type string
	// ReportedType and Message are what the extension sent with init/error
	// or exit/error.
	ReportedType, Message string
}

func (e *ExtensionError) Error() string {
	if e.ReportedType != "" {
		return fmt.Sprintf("extension %s: %s: %s: %s", e.Extension, e.Type, e.ReportedType, e.Message)
	}
	return fmt.Sprintf("extension %s: %s: %s", e.Extension, e.Type, e.Message)
}

// ErrEnded is returned by Invoke after Shutdown or Close, and after a reset
// of a Managed Instances environment, which is never re-initialised.
var ErrEnded = errors.New("sandbox: the execution environment has ended")

// Sandbox is one running execution environment.
type Sandbox struct {
	cfg     Config
	srv     *http.Server
	addr    string
	tempDir string

	mu                 sync.Mutex
	changed            chan struct{} // closed and replaced on every state change
	exts               []*extension
	internal           int
	registrationClosed bool
	subscriptionClosed bool
	subs               []*subscriber
	initEvents         []event
	frozen             bool
	ended              bool
	// failed is the extension failure the environment has not been reset
	// from yet; failures are all of them, over every reset.
	failed   *ExtensionError
	failures []*ExtensionError
	// needsInit is set by a reset: the next Invoke initialises a new
	// environment first, with phase "invoke" (a suppressed init).
	needsInit       bool
	nextCalls       map[string]int // /next calls by extension name, for NextFailures
	initPhase       string
	retired         TelemetryStats // of the subscribers of earlier environments
	invokes         int
	initDuration    time.Duration
	initLines       []Line
	restored        bool
	restoreDuration time.Duration
	output          strings.Builder // the extensions' output, bounded
	// rt is the runtime process (Config.Runtime) of this environment;
	// runtimeFailed its exit outside SHUTDOWN, not reset from yet.
	rt            *runtimeProc
	runtimeFailed *RuntimeError

	// startProcess replaces cmd.Start in tests that need a slow exec.
	startProcess func(*exec.Cmd) error
}

// Start execs the extensions and runs init through RAPID's gates
// (docs/lambda-runtime-contract.md#init-and-its-gates): all registered, runtime
// init, registration closed, every extension's first /next, subscriptions closed.
// It returns when init is done; the sandbox is then frozen until the first Invoke
// (or Restore).
func Start(ctx context.Context, cfg Config) (*Sandbox, error) {
	s := newSandbox(cfg)
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// newSandbox is a Sandbox with cfg's defaults, not started yet.
func newSandbox(cfg Config) *Sandbox {
	cfg.defaults()
	s := &Sandbox{cfg: cfg, changed: make(chan struct{}), initPhase: "init"}
	if cfg.Mode == ModeSnapStart {
		s.initPhase = "snap-start"
	}
	return s
}

// start serves the Runtime API, runs the init and freezes.
func (s *Sandbox) start(ctx context.Context) error {
	var err error
	if s.tempDir, err = os.MkdirTemp("", "lambda-sandbox-"); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = os.RemoveAll(s.tempDir)
		return fmt.Errorf("sandbox: runtime api listener: %w", err)
	}
	s.addr = ln.Addr().String()
	s.srv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()

	if err := s.init(ctx, s.cfg.InitTimeout); err != nil {
		s.Close()
		return err
	}
	if s.cfg.Mode != ModeManagedInstances {
		s.freeze()
	}
	return nil
}

// RuntimeAPI is the address given to extensions as AWS_LAMBDA_RUNTIME_API.
func (s *Sandbox) RuntimeAPI() string { return s.addr }

// InitDuration is the time from exec to the last extension's first /next.
func (s *Sandbox) InitDuration() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.initDuration
}

// InitLines returns the lines the function wrote during init (Config.InitLines).
func (s *Sandbox) InitLines() []Line {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.initLines)
}

// ExtensionOutput returns what the extensions wrote to stdout and stderr.
func (s *Sandbox) ExtensionOutput() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.output.String()
}

// PIDs returns the extensions' process IDs.
func (s *Sandbox) PIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, e := range s.exts {
		if e.cmd != nil && e.cmd.Process != nil {
			out = append(out, e.cmd.Process.Pid)
		}
	}
	return out
}

// Crash is the latest extension failure (a crash, or an init or exit error
// followed by the exit), if any; it stays after the reset that followed.
func (s *Sandbox) Crash() *ExtensionError {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) == 0 {
		return nil
	}
	return s.failures[len(s.failures)-1]
}

// Failures are every extension failure so far, over every reset, in order.
func (s *Sandbox) Failures() []*ExtensionError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.failures)
}

// init runs the init phase through its gates, within timeout.
func (s *Sandbox) init(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	if err := s.launch(); err != nil {
		return err
	}
	// Gate 1: every launched extension has registered.
	if err := s.waitFor(ctx, "every extension to register", func() bool {
		return !slices.ContainsFunc(s.exts, func(e *extension) bool { return e.state == stateLaunched })
	}); err != nil {
		return err
	}
	s.emitPlatform("platform.initStart", map[string]any{
		"initializationType": s.cfg.Mode.initializationType(), "phase": s.initPhase,
		"functionName": s.cfg.FunctionName, "functionVersion": "$LATEST", "runtimeVersion": "emulated.v1",
	})
	// Gate 2: the runtime initialises and asks for its first invocation.
	initStart := time.Now()
	runtimeDone := map[string]any{"initializationType": s.cfg.Mode.initializationType(), "phase": s.initPhase, "status": "success"}
	var failed *RuntimeError
	if err := s.initFunction(ctx, initStart, initStart.Add(timeout)); errors.As(err, &failed) {
		runtimeDone["status"], runtimeDone["errorType"] = "error", failed.Type
		s.emitPlatform("platform.initRuntimeDone", runtimeDone)
		s.emitPlatform("platform.initReport", map[string]any{"initializationType": s.cfg.Mode.initializationType(), "phase": s.initPhase,
			"status": "error", "errorType": failed.Type, "metrics": map[string]any{"durationMs": ms(time.Since(start))}})
		return err
	} else if err != nil {
		return err
	}
	s.emitPlatform("platform.initRuntimeDone", runtimeDone)
	s.mu.Lock()
	s.registrationClosed = true
	s.mu.Unlock()
	// Gate 3: every extension's first /next ends its init.
	if err := s.waitFor(ctx, "every extension's first /next", func() bool {
		return !slices.ContainsFunc(s.exts, func(e *extension) bool { return e.state == stateRegistered })
	}); err != nil {
		return err
	}
	s.mu.Lock()
	s.subscriptionClosed = true
	s.initDuration = time.Since(start)
	initMs := ms(s.initDuration)
	s.mu.Unlock()
	s.emitPlatform("platform.initReport", map[string]any{
		"initializationType": s.cfg.Mode.initializationType(), "phase": s.initPhase, "status": "success",
		"metrics": map[string]any{"durationMs": initMs},
	})
	return nil
}

// waitFor blocks until cond (evaluated under s.mu) holds, an extension
// fails (exits outside SHUTDOWN, or reports an init error), the runtime
// process exits, or ctx ends.
func (s *Sandbox) waitFor(ctx context.Context, what string, cond func() bool) error {
	for {
		s.mu.Lock()
		ok := cond()
		failed := s.failed
		runtimeFailed := s.runtimeFailed
		var reported *ExtensionError
		for _, e := range s.exts {
			if e.reported != nil && e.reported.Type == "Extension.InitError" {
				reported = e.reported
			}
		}
		ch := s.changed
		s.mu.Unlock()
		switch {
		case reported != nil:
			return reported
		case failed != nil:
			return failed
		case runtimeFailed != nil:
			return runtimeFailed
		case ok:
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("sandbox: waiting for %s: %w", what, ctx.Err())
		}
	}
}

// broadcast wakes waitFor; s.mu must be held.
func (s *Sandbox) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// freeze stops telemetry delivery and SIGSTOPs every extension's process
// group and the runtime's, as Lambda freezes the sandbox once everyone has
// called /next.
func (s *Sandbox) freeze() {
	s.mu.Lock()
	if s.frozen || s.ended {
		s.mu.Unlock()
		return
	}
	s.frozen = true
	for _, sub := range s.subs {
		sub.pause(true)
	}
	var running []*extension
	for _, e := range s.exts {
		if e.state != stateExited {
			_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGSTOP)
			running = append(running, e)
		}
	}
	s.signalRuntime(syscall.SIGSTOP)
	s.mu.Unlock()
	s.syncRuntimeOutput()
	// What an extension wrote before it called /next belongs before the
	// freeze: capture it now, not whenever the pipe's reader gets to it.
	for _, e := range running {
		e.out.sync(time.Second)
	}
}

func (s *Sandbox) thaw() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.frozen {
		return
	}
	s.frozen = false
	for _, e := range s.exts {
		if e.state != stateExited {
			_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGCONT)
		}
	}
	s.signalRuntime(syscall.SIGCONT)
	for _, sub := range s.subs {
		sub.pause(false)
	}
}

// Frozen reports whether the sandbox is frozen now.
func (s *Sandbox) Frozen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frozen
}

// Close kills every extension and the runtime, and stops the emulator. It is safe to call
// more than once and after Shutdown.
func (s *Sandbox) Close() {
	s.mu.Lock()
	s.ended = true
	for _, e := range s.exts {
		e.shuttingDown = true // killed, not crashed
		if e.state != stateExited && e.cmd.Process != nil {
			_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
			_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGCONT)
		}
	}
	if s.rt != nil {
		s.rt.shuttingDown = true
		s.signalRuntime(syscall.SIGKILL)
		s.signalRuntime(syscall.SIGCONT)
	}
	exts := slices.Clone(s.exts)
	subs := slices.Clone(s.subs)
	s.mu.Unlock()
	for _, e := range exts {
		select {
		case <-e.exited:
		case <-time.After(5 * time.Second):
		}
	}
	for _, sub := range subs {
		sub.close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	_ = os.RemoveAll(s.tempDir)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
