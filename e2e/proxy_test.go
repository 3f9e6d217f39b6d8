package e2e

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/faultproxy"
	"github.com/lambda-loki/grafana-loki-extension/internal/tinyproxy"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// forwardProxy runs Debian's tinyproxy for the test, or skips it with a
// line saying why (.ci/run installs tinyproxy where it can).
func forwardProxy(t *testing.T) *tinyproxy.Proxy {
	t.Helper()
	p, err := tinyproxy.Start(t.TempDir())
	if errors.Is(err, tinyproxy.ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("tinyproxy's log:\n%s", p.Log())
		}
	})
	return p
}

// loopbackName is a name of this machine that resolves only to loopback
// addresses and is not localhost (its host name, in /etc/hosts): Go sends no
// request for localhost or a loopback IP through a proxy, but it does for a
// name, and the proxy resolves that name back to the loopback, so that no
// request leaves the machine.
func loopbackName(t *testing.T) string {
	t.Helper()
	name, err := os.Hostname()
	if err != nil || name == "" || name == "localhost" {
		t.Skipf("no host name besides localhost (%v): Go never sends localhost through a proxy", err)
	}
	addrs, err := net.LookupHost(name)
	if err != nil || len(addrs) == 0 {
		t.Skipf("the host name %q does not resolve (%v); a proxy test needs a name of the loopback", name, err)
	}
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip == nil || !ip.IsLoopback() {
			t.Skipf("the host name %q resolves to %s, not only to the loopback: the test sends nothing off this machine", name, a)
		}
	}
	return name
}

// Behind a forward proxy (HTTP_PROXY for an http:// Loki, HTTPS_PROXY and
// CONNECT for https:// with the test CA), every line reaches Loki through
// the proxy, and the Runtime API (Extensions and Telemetry, on the
// sandbox's loopback) never goes near it. NO_PROXY naming Loki's address
// sends the pushes direct.
func TestThroughAForwardProxy(t *testing.T) {
	srv := e2etest.Loki(t)
	fwd := forwardProxy(t)
	host := loopbackName(t)
	tests := []struct {
		name    string
		tls     bool
		noProxy bool
	}{
		{"http Loki through HTTP_PROXY", false, false},
		{"https Loki through HTTPS_PROXY with CONNECT", true, false},
		{"NO_PROXY names Loki: direct", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			front := proxy(t, faultproxy.Config{Upstream: srv.URL(), TLS: tt.tls, Host: host})
			env := []string{"HTTP_PROXY=" + fwd.URL(), "HTTPS_PROXY=" + fwd.URL()}
			if tt.tls {
				env = append(env, "LOKI_CA_FILE="+front.CAFile())
			}
			if tt.noProxy {
				env = append(env, "NO_PROXY="+host)
			}
			before := len(fwd.Requests())
			o := run(t, script{pushURL: front.URL() + "/api/prom/push", env: env, invokes: 3, gap: 50 * time.Millisecond, fn: sandbox.Function{Lines: 4}})
			if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() {
				t.Fatalf("delivery: %s", d)
			}
			hostPort := strings.TrimPrefix(strings.TrimPrefix(front.URL(), "https://"), "http://")
			var toLoki, other []string
			for _, r := range fwd.Requests()[before:] {
				if strings.HasPrefix(r, "CONNECT "+hostPort+" ") || strings.HasPrefix(r, "POST http://"+hostPort+"/api/prom/push ") {
					toLoki = append(toLoki, r)
				} else {
					other = append(other, r)
				}
			}
			if len(other) != 0 {
				t.Errorf("requests through the proxy that are not pushes to Loki: %q", other)
			}
			forwarded := front.Stats().Forwarded
			switch {
			case tt.noProxy && len(toLoki) != 0:
				t.Errorf("NO_PROXY=%s, yet %d requests went through the proxy", host, len(toLoki))
			case !tt.noProxy && len(toLoki) == 0:
				t.Errorf("no request went through the proxy; Loki's front saw %d", forwarded)
			case !tt.noProxy && !tt.tls && int64(len(toLoki)) != forwarded:
				t.Errorf("%d pushes through the proxy, %d reached Loki's front: some went direct", len(toLoki), forwarded)
			}
		})
	}
}

// A proxy that is down is an outage like Loki being down: invocations are
// not held for it, the extension says Loki is unavailable, and once the
// proxy is back every line arrives, none lost.
func TestForwardProxyDown(t *testing.T) {
	srv := e2etest.Loki(t)
	fwd := forwardProxy(t)
	host := loopbackName(t)
	front := proxy(t, faultproxy.Config{Upstream: srv.URL(), TLS: true, Host: host})
	fwd.Stop()
	o := run(t, script{
		pushURL: front.URL() + "/api/prom/push",
		env:     append([]string{"HTTPS_PROXY=" + fwd.URL(), "LOKI_CA_FILE=" + front.CAFile()}, shortBudgets...),
		invokes: 4, gap: 100 * time.Millisecond, fn: sandbox.Function{Lines: 5},
		beforeInvoke: func(invoke int) {
			if invoke == 3 {
				if err := fwd.Restart(); err != nil {
					t.Fatal(err)
				}
			}
		},
	})
	out := o.sb.ExtensionOutput()
	if !strings.Contains(out, "Loki is unavailable") {
		t.Errorf("the proxy being down was not reported as an outage; log:\n%s", out)
	}
	for i, inv := range o.invokes[:3] {
		if inv.PostRuntime > time.Second {
			t.Errorf("invocation %d spent %s after its runtime while the proxy was down", i, inv.PostRuntime)
		}
	}
	if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() {
		t.Fatalf("delivery once the proxy was back: %s", d)
	}
	if n := len(fwd.Requests()); n == 0 {
		t.Error("nothing went through the proxy once it was back")
	}
}
