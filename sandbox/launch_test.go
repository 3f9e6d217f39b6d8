package sandbox

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// An extension runs as soon as it is exec'd and may register before the
// emulator's exec call returns (on a loaded machine the launching goroutine
// waits for a processor while the extension gets there first). Its
// registration must still find it as the launched file, not refuse it as an
// internal extension asking for SHUTDOWN and leave the init to time out.
// Here the exec call returns 300 ms late, long after the registration.
func TestRegistrationBeforeTheLaunchReturns(t *testing.T) {
	s := newSandbox(Config{ExtensionsDir: testExtension(t, "testext"), InitTimeout: 2 * time.Second})
	s.startProcess = func(cmd *exec.Cmd) error {
		err := cmd.Start()
		time.Sleep(300 * time.Millisecond)
		return err
	}
	if err := s.start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if out := s.ExtensionOutput(); !strings.HasPrefix(out, "register: 200 ") {
		t.Fatalf("the registration was answered: %q", out)
	}
}
