// Package e2etest is the end-to-end tests' support: it builds the extension
// binary, runs a real Loki, starts the sandbox emulator with the extension
// inside, and compares what the function wrote with what Loki holds
// (with package delivery, which the benchmark shares).
package e2etest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/delivery"
	"github.com/lambda-loki/grafana-loki-extension/internal/freeport"
	"github.com/lambda-loki/grafana-loki-extension/internal/gobuild"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokibin"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// ExtensionName is the file name of the extension in the layer.
const ExtensionName = "grafana-loki-extension"

var (
	lokiOnce sync.Once
	loki     *lokiserver.Server
	lokiErr  error
)

// ExtensionDir builds the extension once per test binary and returns a
// directory that holds only it, as /opt/extensions would.
func ExtensionDir(t testing.TB) string {
	t.Helper()
	bin, err := gobuild.Binary(gobuild.Module)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(bin)
}

// LokiBinary returns the Loki binary, or skips the test with one line that
// says how to get it. Under CI a missing Loki fails the test instead.
func LokiBinary(t testing.TB) string {
	t.Helper()
	bin, err := lokibin.Find()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs a real Loki: %v", err)
		}
		t.Skip(err.Error())
	}
	return bin
}

// Loki returns a real Loki shared by the tests of this process, started on
// first use. Tests keep apart by function name. Call Cleanup from TestMain.
func Loki(t testing.TB) *lokiserver.Server {
	t.Helper()
	bin := LokiBinary(t)
	lokiOnce.Do(func() {
		loki, lokiErr = lokiserver.Start(context.Background(), lokiserver.Options{Binary: bin})
	})
	if lokiErr != nil {
		t.Fatal(lokiErr)
	}
	return loki
}

// StartLoki starts a Loki of the test's own, stopped when the test ends.
func StartLoki(t testing.TB, opts lokiserver.Options) *lokiserver.Server {
	t.Helper()
	opts.Binary = LokiBinary(t)
	srv, err := lokiserver.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

// Cleanup stops the shared Loki.
func Cleanup() {
	if loki != nil {
		loki.Stop()
	}
}

// FunctionName returns a function name unique to the test, so that tests
// sharing a Loki query only their own lines.
func FunctionName(t testing.TB) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, t.Name())
	return fmt.Sprintf("%s-%d", name, time.Now().UnixNano()%1_000_000)
}

// FreePort returns a TCP port for the extension to bind later (see freeport
// for why not the kernel's 127.0.0.1:0).
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Env is the extension's environment for a local run: the listener on a
// free port (AWS_SAM_LOCAL binds it without the sandbox host name) and Loki's
// push URL, plus extra KEY=value pairs.
func Env(t testing.TB, lokiURL string, extra ...string) []string {
	env := []string{"AWS_SAM_LOCAL=true", "TELEMETRY_LISTENER_PORT=" + strconv.Itoa(FreePort(t))}
	if lokiURL != "" {
		env = append(env, "LOKI_URL="+lokiURL)
	}
	return append(env, extra...)
}

// StartSandbox starts the emulator with the built extension, or with the
// extensions of cfg.ExtensionsDir when it is set. The sandbox is closed when
// the test ends, and the extensions' output is logged if the test failed.
func StartSandbox(t testing.TB, cfg sandbox.Config) *sandbox.Sandbox {
	t.Helper()
	if cfg.ExtensionsDir == "" {
		cfg.ExtensionsDir = ExtensionDir(t)
	}
	sb, err := sandbox.Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("starting the sandbox: %v", err)
	}
	t.Cleanup(func() {
		sb.Close()
		if t.Failed() {
			t.Logf("extension output:\n%s", sb.ExtensionOutput())
		}
	})
	return sb
}

// Query reads every line of a selector since start.
func Query(t testing.TB, srv *lokiserver.Server, logql string, start time.Time, tenant string) []lokiserver.Line {
	t.Helper()
	lines, err := srv.Query(t.Context(), lokiserver.Query{LogQL: logql, Start: start.Add(-time.Minute), End: time.Now().Add(time.Minute), TenantID: tenant})
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

// CheckDelivery reads the function's own stream ({function=..., type=""})
// and compares it with want. Platform lines are not part of it.
func CheckDelivery(t testing.TB, srv *lokiserver.Server, function string, want []sandbox.Line, since time.Time) delivery.Delivery {
	t.Helper()
	return delivery.Compare(want, Query(t, srv, delivery.Selector(function), since, ""))
}

// Count returns how many lines of a selector Loki holds now.
func Count(t testing.TB, srv *lokiserver.Server, logql string, since time.Time) int {
	return len(Query(t, srv, logql, since, ""))
}
