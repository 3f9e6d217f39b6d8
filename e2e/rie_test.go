package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/freeport"
	"github.com/lambda-loki/grafana-loki-extension/internal/outputbuf"
	"github.com/lambda-loki/grafana-loki-extension/internal/riebin"
	"github.com/lambda-loki/grafana-loki-extension/internal/runtimes"
)

// Where AWS's runtime interface emulator, in its Managed Instances mode,
// looks for extensions, the runtime's bootstrap and the function's code; it
// cannot be told other places.
const (
	rieExtensions = "/opt/extensions"
	rieBootstrap  = "/var/runtime/bootstrap"
	rieTask       = "/var/task"
)

// AWS's own code on both sides of the extension: AWS's runtime interface
// emulator (RIE) in its Managed Instances mode (its Extensions, Telemetry
// and Runtime APIs, relaying real Telemetry API batches) runs the
// TypeScript function through AWS's Node.js runtime interface client. On
// Managed Instances every line is a JSON object that carries its requestId,
// delivered as a text record (docs/lambda-runtime-contract.md#managed-instances):
// `| request_id="<id>"` must find exactly that invocation's lines.
func TestRuntimeInterfaceEmulatorManagedInstances(t *testing.T) {
	fn := readableCopy(t, realFunction(t, runtimes.TypeScript))
	installForRIE(t, fn)
	rie, err := riebin.Ensure(t.Context(), testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	srv := e2etest.Loki(t)
	function := fmt.Sprintf("rie-mi-%d", time.Now().UnixNano()%1_000_000_000)
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = freeport.Pick(); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	cmd := exec.CommandContext(t.Context(), rie,
		fmt.Sprintf("--runtime-api-address=127.0.0.1:%d", ports[0]),
		fmt.Sprintf("--runtime-interface-emulator-address=127.0.0.1:%d", ports[1]))
	cmd.Dir = rieTask
	cmd.Env = append(os.Environ(), fn.Env...)
	cmd.Env = append(cmd.Env,
		"AWS_LAMBDA_MAX_CONCURRENCY=4", "AWS_LAMBDA_FUNCTION_NAME="+function, "_HANDLER="+fn.Handler, "LAMBDA_TASK_ROOT="+fn.Dir,
		"LOKI_URL="+srv.PushURL(), "AWS_SAM_LOCAL=true", fmt.Sprintf("TELEMETRY_LISTENER_PORT=%d", ports[2]), "LOG_LEVEL=debug")
	var out outputbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(os.Interrupt)
			_ = cmd.Wait()
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("RIE, runtime and extension output:\n%s", out.String())
		}
	})

	invokeURL := fmt.Sprintf("http://127.0.0.1:%d/2015-03-31/functions/function/invocations", ports[1])
	markers := []string{function + "-a", function + "-b", function + "-c"}
	for _, m := range markers {
		invokeRIE(t, invokeURL, m)
	}
	// SHUTDOWN drains; on Managed Instances the extension pushes on its timer too.
	stop()

	ids := requestIDsByMarker(t, out.String(), markers)
	for _, m := range markers {
		id := ids[m]
		got := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q} | request_id=%q`, function, id), start, "")
		if len(got) < 7 {
			t.Fatalf("request_id=%q (marker %s): %d lines, want the spec's 7 at least: %v", id, m, len(got), got)
		}
		for _, l := range got {
			if !strings.Contains(l.Line, m) && !strings.Contains(l.Line, id) {
				t.Fatalf("request_id=%q found a line of another invocation: %q", id, l.Line)
			}
		}
		mine := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q} |= %q`, function, m), start, "")
		if len(mine) != len(got) {
			t.Fatalf("marker %s: %d lines in Loki, %d of them with request_id=%q", m, len(mine), len(got), id)
		}
	}
}

// readableCopy copies the built function (its staged directory, the
// parent of its code directory, with the dependencies it links to) where
// any user can read it: RIE runs the runtime and the extensions as an
// unprivileged user (uid 993), who cannot read the builds cached in root's
// home.
func readableCopy(t *testing.T, fn *runtimes.Function) *runtimes.Function {
	t.Helper()
	root := filepath.Dir(fn.Dir)
	tmp, err := os.MkdirTemp("", "rie-function-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(tmp, "function")
	for _, args := range [][]string{{"cp", "-rL", root, dst}, {"chmod", "-R", "a+rX", dst}} {
		if out, err := exec.CommandContext(t.Context(), args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("copying the function (%s): %v: %s", args[0], err, out)
		}
	}
	moved := *fn
	moved.Dir = filepath.Join(dst, strings.TrimPrefix(fn.Dir, root))
	moved.Command = make([]string, len(fn.Command))
	for i, a := range fn.Command {
		if strings.HasPrefix(a, root+"/") {
			a = filepath.Join(dst, strings.TrimPrefix(a, root))
		}
		moved.Command[i] = a
	}
	return &moved
}

// installForRIE puts the built extension in /opt/extensions, a bootstrap
// that starts fn's runtime client in /var/runtime, and fn's code at
// /var/task (a link), for the test's life; it skips when that cannot be done
// without touching anything of the machine's: each must be creatable and
// absent (or, for /opt/extensions, empty) before.
func installForRIE(t *testing.T, fn *runtimes.Function) {
	t.Helper()
	entries, err := os.ReadDir(rieExtensions)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(rieExtensions, 0o755); err != nil {
			t.Skipf("RIE reads extensions from %s only, which cannot be created here: %v", rieExtensions, err)
		}
		t.Cleanup(func() { _ = os.Remove(rieExtensions) })
	case err != nil:
		t.Skipf("RIE reads extensions from %s only: %v", rieExtensions, err)
	case len(entries) > 0:
		t.Skipf("%s already holds extensions of this machine's; RIE would run them too", rieExtensions)
	}
	for _, p := range []string{rieBootstrap, rieTask} {
		if _, err := os.Lstat(p); err == nil {
			t.Skipf("%s exists on this machine; RIE would run it", p)
		}
	}
	data, err := os.ReadFile(filepath.Join(e2etest.ExtensionDir(t), "grafana-loki-extension"))
	if err != nil {
		t.Fatal(err)
	}
	ext := filepath.Join(rieExtensions, "grafana-loki-extension")
	if err := os.WriteFile(ext, data, 0o755); err != nil {
		t.Skipf("cannot install the extension in %s: %v", rieExtensions, err)
	}
	t.Cleanup(func() { _ = os.Remove(ext) })
	runtimeDir := filepath.Dir(rieBootstrap)
	if _, err := os.Stat(runtimeDir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(runtimeDir, 0o755); err != nil {
			t.Skipf("cannot create %s: %v", runtimeDir, err)
		}
		t.Cleanup(func() { _ = os.Remove(runtimeDir) })
	}
	quoted := make([]string, len(fn.Command))
	for i, a := range fn.Command {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	script := "#!/bin/sh\nexec " + strings.Join(quoted, " ") + "\n"
	if err := os.WriteFile(rieBootstrap, []byte(script), 0o755); err != nil {
		t.Skipf("cannot write %s: %v", rieBootstrap, err)
	}
	t.Cleanup(func() { _ = os.Remove(rieBootstrap) })
	if err := os.Symlink(fn.Dir, rieTask); err != nil {
		t.Skipf("cannot link %s: %v", rieTask, err)
	}
	t.Cleanup(func() { _ = os.Remove(rieTask) })
}

// invokeRIE invokes the function through RIE's invoke endpoint, once the
// runtime is ready: RIE refuses the connection until it listens and answers
// Runtime.Unavailable until the runtime waits in /next.
func invokeRIE(t *testing.T, url, marker string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"marker": marker})
	var status int
	var got []byte
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		resp, err := http.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			got = []byte(err.Error())
			continue
		}
		got, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
		if !strings.Contains(string(got), "Runtime.Unavailable") {
			break
		}
	}
	if status != http.StatusOK || !strings.Contains(string(got), marker) {
		t.Fatalf("RIE answered %d: %s", status, got)
	}
}

// requestIDsByMarker reads each invocation's request ID from the lines the
// runtime printed (JSON objects with requestId and the message).
func requestIDsByMarker(t *testing.T, output string, markers []string) map[string]string {
	t.Helper()
	re := regexp.MustCompile(`"requestId":"([0-9a-f-]{36})"`)
	ids := map[string]string{}
	for _, line := range strings.Split(output, "\n") {
		for _, m := range markers {
			if strings.Contains(line, "info line "+m) {
				if sub := re.FindStringSubmatch(line); sub != nil {
					ids[m] = sub[1]
				}
			}
		}
	}
	for _, m := range markers {
		if ids[m] == "" {
			t.Fatalf("no request ID printed for %s", m)
		}
	}
	return ids
}
