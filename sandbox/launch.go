package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

// launch execs every executable file of ExtensionsDir in lexical order,
// each in its own process group.
func (s *Sandbox) launch() error {
	entries, err := os.ReadDir(s.cfg.ExtensionsDir)
	if err != nil {
		return fmt.Errorf("sandbox: reading extensions dir: %w", err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, de := range entries {
		info, err := de.Info()
		if err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
			continue
		}
		if err := s.launchOne(de.Name()); err != nil {
			return err
		}
	}
	if len(s.exts) == 0 {
		return fmt.Errorf("sandbox: no executable extension in %s", s.cfg.ExtensionsDir)
	}
	return nil
}

// launchOne execs one extension with its output captured and its exit
// watched.
func (s *Sandbox) launchOne(name string) error {
	e := &extension{name: name, events: make(chan []byte, 1), exited: make(chan struct{})}
	e.cmd = exec.Command(filepath.Join(s.cfg.ExtensionsDir, name))
	e.cmd.Env = s.extensionEnv()
	e.cmd.Dir = s.tempDir
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A pipe of the emulator's own, not StdoutPipe: Wait would close that
	// one, and sync needs a pollable *os.File.
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	e.cmd.Stdout, e.cmd.Stderr = w, w
	e.out = newOutput(r)
	// Under the lock: the extension may register before the exec call
	// returns, and its registration must find it launched (else it is taken
	// for an internal extension, refused, and the init hangs).
	s.mu.Lock()
	err = s.exec(e.cmd)
	if err == nil {
		s.exts = append(s.exts, e)
	}
	s.mu.Unlock()
	w.Close()
	if err != nil {
		r.Close()
		return fmt.Errorf("sandbox: exec %s: %w", name, err)
	}
	go s.capture(e)
	go s.watch(e)
	go e.sampleRSS()
	return nil
}

// exec starts an extension's process: cmd.Start, or startProcess if a test
// set one.
func (s *Sandbox) exec(cmd *exec.Cmd) error {
	if s.startProcess != nil {
		return s.startProcess(cmd)
	}
	return cmd.Start()
}

func (s *Sandbox) extensionEnv() []string {
	env := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + s.tempDir, "TMPDIR=" + s.tempDir, "TZ=:UTC", "LANG=en_US.UTF-8",
		"AWS_LAMBDA_RUNTIME_API=" + s.addr,
		"AWS_LAMBDA_FUNCTION_NAME=" + s.cfg.FunctionName,
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		fmt.Sprintf("AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%d", s.cfg.MemoryMB),
		"AWS_REGION=" + s.cfg.Region, "AWS_DEFAULT_REGION=" + s.cfg.Region,
		"AWS_LAMBDA_INITIALIZATION_TYPE=" + s.cfg.Mode.initializationType(),
	}
	if s.cfg.LogFormat == "json" {
		env = append(env, "AWS_LAMBDA_LOG_FORMAT=JSON")
	}
	return append(env, s.cfg.Env...)
}

// watch waits for an extension to exit. Any exit outside SHUTDOWN, even
// with status 0, fails the environment
// (docs/lambda-runtime-contract.md#reset-after-a-failure): as the init or exit
// error the extension reported first, or else as an Extension.Crash.
func (s *Sandbox) watch(e *extension) {
	<-e.out.done
	err := e.cmd.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	e.exitErr = err
	e.exitedAt = time.Now()
	if !e.shuttingDown {
		failure := e.reported
		if failure == nil {
			failure = &ExtensionError{Extension: e.name, Type: "Extension.Crash", Message: fmt.Sprintf("exited outside SHUTDOWN: %v", processStatus(e.cmd))}
		}
		s.failures = append(s.failures, failure)
		if s.failed == nil {
			s.failed = failure
		}
	}
	e.state = stateExited
	close(e.exited)
	s.broadcast()
}

func processStatus(cmd *exec.Cmd) string {
	if cmd.ProcessState == nil {
		return "unknown"
	}
	return cmd.ProcessState.String()
}
