package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/runtimes"
	"github.com/lambda-loki/grafana-loki-extension/internal/wait"
)

// telemetryFD is the descriptor number the runtime's telemetry log pipe
// gets (_LAMBDA_TELEMETRY_LOG_FD): the first of ExtraFiles.
const telemetryFD = 3

// runtimeStopGrace is how long the runtime has between SIGTERM and SIGKILL
// at SHUTDOWN (docs/lambda-runtime-contract.md#shutdown).
const runtimeStopGrace = 300 * time.Millisecond

// RuntimeError is a failure of the runtime process (Config.Runtime): an
// init error it reported through /runtime/init/error (Type
// Runtime.InitError, with the type and message it reported), or its exit
// outside SHUTDOWN (Runtime.ExitError).
type RuntimeError struct {
	Type string
	// ReportedType is the Lambda-Runtime-Function-Error-Type the runtime
	// sent with /init/error; Message is its body's errorMessage, or the
	// exit status.
	ReportedType, Message string
}

func (e *RuntimeError) Error() string {
	if e.ReportedType != "" {
		return fmt.Sprintf("runtime: %s: %s: %s", e.Type, e.ReportedType, e.Message)
	}
	return fmt.Sprintf("runtime: %s: %s", e.Type, e.Message)
}

// runtimeProc is the function's runtime process and its Runtime API state
// (docs/lambda-runtime-contract.md#runtime-api). Its fields are guarded by
// the sandbox's mutex.
type runtimeProc struct {
	cmd    *exec.Cmd
	out    *output // stdout and stderr, one pipe as Lambda captures both
	frames *output // the telemetry log fd
	exited chan struct{}
	// ready is set by the first /next (or SnapStart's /restore/next): the
	// runtime's part of the init is done.
	ready bool
	// queue holds invocations no /next has taken yet; inflight those taken
	// and not answered, by request ID.
	queue    []*invocation
	inflight map[string]*invocation
	// running are the invocations under way, from their Invoke to the
	// capture of what the runtime wrote for them: the runtime's output
	// belongs to the one running (on Managed Instances, only while there is
	// one).
	running []*invocation
	// waiting counts /next calls blocked for an invocation.
	waiting int
	// restoring is set while the runtime waits in /restore/next; restore
	// is closed by Restore to let it go.
	restoring    bool
	restore      chan struct{}
	initErr      *RuntimeError
	shuttingDown bool
}

// initFunction runs the function's part of the init (gate 2): the runtime
// process up to its first /next, or the scripted init lines and
// RuntimeInit. It returns the runtime's failure, if any.
func (s *Sandbox) initFunction(ctx context.Context, start time.Time, deadline time.Time) error {
	if s.cfg.Runtime == nil {
		if len(s.cfg.InitLines) > 0 {
			lines := s.runFunction(ctx, Function{Messages: s.cfg.InitLines}, "", deadline)
			s.mu.Lock()
			s.initLines = lines
			s.mu.Unlock()
		}
		wait.Sleep(ctx, s.cfg.RuntimeInit-time.Since(start))
		return nil
	}
	if err := s.launchRuntime(*s.cfg.Runtime); err != nil {
		return err
	}
	err := s.waitFor(ctx, "the runtime's first /next", func() bool { return s.rt.ready || s.rt.initErr != nil })
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && s.rt.initErr != nil {
		err = s.rt.initErr
	}
	return err
}

// launchRuntime execs the runtime process in its own process group, with
// Lambda's environment, its stdout and stderr captured on one pipe and the
// telemetry log fd on another.
func (s *Sandbox) launchRuntime(fn runtimes.Function) error {
	if len(fn.Command) == 0 {
		return fmt.Errorf("sandbox: runtime %s has no command", fn.Name)
	}
	rt := &runtimeProc{exited: make(chan struct{}), inflight: map[string]*invocation{}, restore: make(chan struct{})}
	rt.cmd = exec.Command(fn.Command[0], fn.Command[1:]...)
	rt.cmd.Dir = fn.Dir
	rt.cmd.Env = s.runtimeEnv(fn)
	rt.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	frameR, frameW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return fmt.Errorf("sandbox: %w", err)
	}
	rt.cmd.Stdout, rt.cmd.Stderr = outW, outW
	rt.cmd.ExtraFiles = []*os.File{frameW}
	rt.out, rt.frames = newOutput(outR), newOutput(frameR)
	s.mu.Lock()
	err = s.exec(rt.cmd)
	if err == nil {
		s.rt = rt
	}
	s.mu.Unlock()
	outW.Close()
	frameW.Close()
	if err != nil {
		outR.Close()
		frameR.Close()
		return fmt.Errorf("sandbox: exec runtime %s: %w", fn.Name, err)
	}
	go rt.out.read(func(data []byte, atEOF bool) []byte {
		return splitLines(data, atEOF, func(line []byte) { s.runtimeLine(rt, line) })
	})
	go rt.frames.read(func(data []byte, atEOF bool) []byte { return s.runtimeFrames(rt, data, atEOF) })
	go s.watchRuntime(rt)
	return nil
}

// runtimeEnv is the runtime's environment, as Lambda sets it
// (docs/lambda-runtime-contract.md#environment-variables): the function's,
// the runtime's own set, the extensions' settings of Config.Env (a
// function's variables reach both), then the Function's extras.
func (s *Sandbox) runtimeEnv(fn runtimes.Function) []string {
	format := "Text"
	if s.cfg.LogFormat == "json" {
		format = "JSON"
	}
	// Lambda's PATH, then this machine's, where the runtime's tools are.
	path := "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin"
	if host := os.Getenv("PATH"); host != "" {
		path += ":" + host
	}
	env := []string{
		"PATH=" + path, "TZ=:UTC", "LANG=en_US.UTF-8",
		"AWS_LAMBDA_RUNTIME_API=" + s.addr,
		"_HANDLER=" + fn.Handler, "LAMBDA_TASK_ROOT=" + fn.Dir,
		"AWS_LAMBDA_FUNCTION_NAME=" + s.cfg.FunctionName, "AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		fmt.Sprintf("AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%d", s.cfg.MemoryMB),
		"AWS_REGION=" + s.cfg.Region, "AWS_DEFAULT_REGION=" + s.cfg.Region,
		"AWS_LAMBDA_INITIALIZATION_TYPE=" + s.cfg.Mode.initializationType(),
		"AWS_LAMBDA_LOG_FORMAT=" + format,
		fmt.Sprintf("_LAMBDA_TELEMETRY_LOG_FD=%d", telemetryFD),
	}
	if format == "JSON" && s.cfg.LogLevel != "" {
		env = append(env, "AWS_LAMBDA_LOG_LEVEL="+strings.ToUpper(s.cfg.LogLevel))
	}
	if s.cfg.Mode != ModeSnapStart {
		// A snapshot's environment is restored many times: no stream of its own.
		env = append(env, "AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/"+s.cfg.FunctionName,
			"AWS_LAMBDA_LOG_STREAM_NAME="+time.Now().UTC().Format("2006/01/02")+"/[$LATEST]"+filepath.Base(s.tempDir))
	}
	if execEnv := executionEnv(fn.Runtime); execEnv != "" {
		env = append(env, "AWS_EXECUTION_ENV="+execEnv)
	}
	env = append(env, s.cfg.Env...)
	return append(env, fn.Env...)
}

// executionEnv is AWS_EXECUTION_ENV for a runtime; OS-only runtimes
// (provided.al2023, which Go functions use) have none.
func executionEnv(runtime string) string {
	switch runtime {
	case "nodejs":
		return "AWS_Lambda_nodejs22.x"
	case "python":
		return "AWS_Lambda_python3.13"
	}
	return ""
}

// watchRuntime waits for the runtime to exit. An exit outside SHUTDOWN,
// after an init error or not, fails the environment as Runtime.ExitError
// (the init error, reported first, stays what the init returns).
func (s *Sandbox) watchRuntime(rt *runtimeProc) {
	<-rt.out.done
	<-rt.frames.done
	_ = rt.cmd.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !rt.shuttingDown && s.runtimeFailed == nil {
		s.runtimeFailed = rt.initErr
		if s.runtimeFailed == nil {
			s.runtimeFailed = &RuntimeError{Type: "Runtime.ExitError", Message: "exited: " + processStatus(rt.cmd)}
		}
	}
	close(rt.exited)
	s.broadcast()
}

// signalRuntime sends sig to the runtime's process group, if it runs;
// s.mu must be held.
func (s *Sandbox) signalRuntime(sig syscall.Signal) {
	if rt := s.rt; rt != nil && rt.cmd.Process != nil && !isClosed(rt.exited) {
		_ = syscall.Kill(-rt.cmd.Process.Pid, sig)
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// syncRuntimeOutput captures what the runtime has written so far, as the
// freeze does for extensions: lines it wrote before it answered belong to
// the invocation, before runtimeDone.
func (s *Sandbox) syncRuntimeOutput() {
	s.mu.Lock()
	rt := s.rt
	s.mu.Unlock()
	if rt != nil {
		rt.out.sync(time.Second)
		rt.frames.sync(time.Second)
	}
}

// stopRuntime ends the runtime at SHUTDOWN or a reset: SIGTERM, up to
// runtimeStopGrace (never past deadline), then SIGKILL.
func (s *Sandbox) stopRuntime(deadline time.Time) {
	s.mu.Lock()
	rt := s.rt
	if rt == nil {
		s.mu.Unlock()
		return
	}
	rt.shuttingDown = true
	s.signalRuntime(syscall.SIGTERM)
	s.mu.Unlock()
	grace := min(runtimeStopGrace, time.Until(deadline))
	select {
	case <-rt.exited:
		return
	case <-time.After(max(grace, 0)):
	}
	s.mu.Lock()
	s.signalRuntime(syscall.SIGKILL)
	s.mu.Unlock()
	select {
	case <-rt.exited:
	case <-time.After(5 * time.Second):
	}
}

// RuntimePID is the runtime process's ID, 0 without Config.Runtime or
// before it started.
func (s *Sandbox) RuntimePID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rt == nil || s.rt.cmd.Process == nil {
		return 0
	}
	return s.rt.cmd.Process.Pid
}
