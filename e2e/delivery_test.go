package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/delivery"
	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/faultproxy"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

func proxy(t *testing.T, cfg faultproxy.Config) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Short budgets keep a bad Loki from slowing the suite; they are what a
// user would set to bound the billed time a bad day costs.
var shortBudgets = []string{"FLUSH_TIMEOUT_MS=400", "LOKI_TIMEOUT_MS=200"}

// Loki down for the first 2 of 5 invocations, then back: what could not be
// pushed stays queued and goes out later; every line is in Loki by the end
// of SHUTDOWN, none twice, and no invocation is held past its deadline.
func TestLokiDownThenBack(t *testing.T) {
	srv := e2etest.Loki(t)
	p := proxy(t, faultproxy.Config{Upstream: srv.URL()})
	o := run(t, script{
		pushURL: p.URL() + "/api/prom/push", env: shortBudgets,
		invokes: 5, gap: 200 * time.Millisecond, fn: sandbox.Function{Lines: 20},
		beforeInvoke: func(i int) {
			if i < 2 {
				p.SetFault(faultproxy.Fault{Kind: faultproxy.Down})
			} else {
				p.SetFault(faultproxy.Fault{Kind: faultproxy.Pass})
			}
		},
	})
	for i, inv := range o.invokes {
		if inv.PostRuntime > time.Second {
			t.Errorf("invoke %d: post-runtime overhead %s, beyond the 400 ms flush budget", i, inv.PostRuntime)
		}
	}
	if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() {
		t.Fatalf("delivery: %s", d)
	}
	if st := p.Stats(); st.Dropped == 0 {
		t.Fatal("the proxy never refused a push: the test did not test the outage")
	}
}

// Rate limits and server errors: retried inside the budget, requeued when
// the budget ends, never lost; Loki drops exact duplicates of retried pushes.
func TestLokiErrorsLoseNothing(t *testing.T) {
	tests := []struct {
		name  string
		fault faultproxy.Fault
		// failing says on which invocations the fault is on.
		failing func(i int) bool
	}{
		{"429 for two invocations", faultproxy.Fault{Kind: faultproxy.Status, Code: 429}, func(i int) bool { return i < 2 }},
		{"500 for two invocations", faultproxy.Fault{Kind: faultproxy.Status, Code: 500}, func(i int) bool { return i < 2 }},
		{"503 on every other request", faultproxy.Fault{Kind: faultproxy.EveryOther, Code: 503}, func(int) bool { return true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := e2etest.Loki(t)
			p := proxy(t, faultproxy.Config{Upstream: srv.URL()})
			o := run(t, script{
				pushURL: p.URL() + "/api/prom/push", env: []string{"FLUSH_TIMEOUT_MS=1500", "LOKI_TIMEOUT_MS=500"},
				invokes: 4, gap: 100 * time.Millisecond, fn: sandbox.Function{Lines: 25},
				beforeInvoke: func(i int) {
					if tt.failing(i) {
						p.SetFault(tt.fault)
					} else {
						p.SetFault(faultproxy.Fault{Kind: faultproxy.Pass})
					}
				},
			})
			if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() {
				t.Fatalf("delivery: %s", d)
			}
			if st := p.Stats(); st.Failed == 0 {
				t.Fatal("no request failed: the fault was not exercised")
			}
		})
	}
}

// A Loki that accepts and never answers: each invocation's overhead stays
// within the flush budget, the extension exits before the SHUTDOWN deadline,
// and says how many lines it could not deliver.
func TestLokiHangingStaysInBudget(t *testing.T) {
	srv := e2etest.Loki(t)
	p := proxy(t, faultproxy.Config{Upstream: srv.URL()})
	p.SetFault(faultproxy.Fault{Kind: faultproxy.Hang})
	o := run(t, script{
		pushURL: p.URL() + "/api/prom/push", env: shortBudgets,
		invokes: 3, gap: 100 * time.Millisecond, fn: sandbox.Function{Lines: 10},
	})
	for i, inv := range o.invokes {
		// The budget is 400 ms, plus up to timeoutMs (25) for runtimeDone to arrive.
		if inv.PostRuntime > 400*time.Millisecond+150*time.Millisecond {
			t.Errorf("invoke %d: post-runtime overhead %s exceeds the 400 ms flush budget", i, inv.PostRuntime)
		}
	}
	out := o.sb.ExtensionOutput()
	m := regexp.MustCompile(`shutting down with (\d+) lines undelivered`).FindStringSubmatch(out)
	if m == nil || m[1] != "30" {
		t.Fatalf("the extension did not count the 30 undelivered lines:\n%s", out)
	}
	if p.Stats().Hung == 0 {
		t.Fatal("no request hung")
	}
}

// Basic auth and a tenant through a gateway that checks them, in front of a
// multi-tenant Loki; a wrong password is reported clearly, not retried
// forever, and never printed.
func TestAuthAndTenant(t *testing.T) {
	srv := e2etest.StartLoki(t, lokiserver.Options{AuthEnabled: true})
	p := proxy(t, faultproxy.Config{Upstream: srv.URL(), Username: "123456", Password: "glc_s3cr3t", TenantID: "team-a"})
	tests := []struct {
		name      string
		password  string
		delivered bool
	}{
		{"right password", "glc_s3cr3t", true},
		{"wrong password", "glc_wr0ng", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := p.Stats().AuthFailures
			o := run(t, script{
				pushURL: p.URL() + "/loki/api/v1/push",
				env:     []string{"LOKI_USERNAME=123456", "LOKI_PASSWORD=" + tt.password, "LOKI_TENANT_ID=team-a"},
				invokes: 3, gap: 100 * time.Millisecond, fn: sandbox.Function{Lines: 5},
			})
			got := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q}`, o.function), o.start, "team-a")
			out := o.sb.ExtensionOutput()
			if strings.Contains(out, tt.password) {
				t.Fatalf("the password appears in the extension's log:\n%s", out)
			}
			if tt.delivered {
				if d := delivery.Compare(o.lines, got); !d.Complete() {
					t.Fatalf("delivery: %s", d)
				}
				return
			}
			if len(got) != 0 || !strings.Contains(out, "authentication failed (401") || !strings.Contains(out, "Loki rejected 5 lines") {
				t.Fatalf("%d lines stored; log:\n%s", len(got), out)
			}
			// One request per window, no retry loop: 3 invocations + shutdown.
			if n := p.Stats().AuthFailures - before; n > 4 {
				t.Fatalf("%d rejected requests for 4 windows: rejections are retried", n)
			}
		})
	}
}

// HTTPS verified against a private CA given with LOKI_CA_FILE; without it
// the push fails on the certificate.
func TestTLSWithATestCA(t *testing.T) {
	srv := e2etest.Loki(t)
	p := proxy(t, faultproxy.Config{Upstream: srv.URL(), TLS: true})
	for _, withCA := range []bool{true, false} {
		t.Run(fmt.Sprintf("CA given %v", withCA), func(t *testing.T) {
			// A TLS handshake on a loaded machine can take longer than
			// shortBudgets' 200 ms request timeout; the test is about the
			// certificate, not the timeout.
			env := []string{"FLUSH_TIMEOUT_MS=1500", "LOKI_TIMEOUT_MS=1000"}
			if withCA {
				env = append([]string{"LOKI_CA_FILE=" + p.CAFile()}, env...)
			}
			o := run(t, script{pushURL: p.URL() + "/api/prom/push", env: env, invokes: 2, gap: 50 * time.Millisecond, fn: sandbox.Function{Lines: 4}})
			d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start)
			if withCA && !d.Complete() {
				t.Fatalf("delivery: %s", d)
			}
			if !withCA && (d.Delivered != 0 || !strings.Contains(o.sb.ExtensionOutput(), "certificate")) {
				t.Fatalf("delivered %d without trusting the CA; log:\n%s", d.Delivered, o.sb.ExtensionOutput())
			}
		})
	}
}

// Bad telemetry posted straight to the extension's listener
// (docs/lambda-runtime-contract.md#delivery says what Lambda sends; these are what
// it must survive): each gets a defined answer, and the extension keeps working
// and shipping.
func TestBadTelemetry(t *testing.T) {
	srv := e2etest.Loki(t)
	function := e2etest.FunctionName(t)
	port := e2etest.FreePort(t)
	listener := "http://127.0.0.1:" + strconv.Itoa(port) + "/"
	stamp := time.Now().UTC().Format(sandbox.TimeLayout)
	event := func(record string) string {
		return `{"time":"` + stamp + `","type":"function","record":` + record + `}`
	}
	bigBatch := "[" + strings.Repeat(event(`"`+strings.Repeat("b", 1000)+`"`)+",", 1999) + event(`"last of the big batch"`) + "]"
	tests := []struct {
		name     string
		body     string
		wantCode int
		wantLine string // a line expected in Loki afterwards, if any
	}{
		{"garbage", `{{{ not json`, 400, ""},
		{"an object, not an array", `{"type":"function"}`, 400, ""},
		{"2 MB batch", bigBatch, 200, "last of the big batch"},
		{"6 MB body", "[" + strings.Repeat(" ", 6<<20) + "]", 413, ""},
		{"number record", "[" + event(`12345`) + "]", 200, "12345"},
		{"nested object record", "[" + event(`{"a":{"b":[1,{"c":null}]}}`) + "]", 200, `{"a":{"b":[1,{"c":null}]}}`},
		{"invalid UTF-8", "[" + event("\"bad \xff\xfe bytes\"") + "]", 200, "bad \uFFFD\uFFFD bytes"},
		{"unknown event type", `[{"time":"` + stamp + `","type":"platform.fromTheFuture","record":{"x":1}}]`, 200, ""},
		{"1 MiB line", "[" + event(`"huge `+strings.Repeat("h", 1<<20)+`"`) + "]", 200, ""},
	}
	results := make([]int, len(tests))
	o := run(t, script{
		function: function,
		env:      []string{"TELEMETRY_LISTENER_PORT=" + strconv.Itoa(port)},
		invokes:  2, gap: 50 * time.Millisecond, fn: sandbox.Function{Lines: 3},
		atFreeze: func(t *testing.T, invoke int, _ string) {
			if invoke != 0 {
				return
			}
			// Not yet frozen: the extension is waiting in /next.
			for i, tt := range tests {
				resp, err := http.Post(listener, "application/json", bytes.NewReader([]byte(tt.body)))
				if err == nil {
					results[i] = resp.StatusCode
					resp.Body.Close()
				}
			}
		},
	})
	lines := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q}`, function), o.start, "")
	have := map[string]bool{}
	for _, l := range lines {
		have[l.Line] = true
		if strings.HasPrefix(l.Line, "huge ") && (len(l.Line) > 256*1024 || !strings.Contains(l.Line, "…[truncated ")) {
			t.Errorf("the 1 MiB line arrived as %d bytes", len(l.Line))
		}
	}
	for i, tt := range tests {
		if results[i] != tt.wantCode {
			t.Errorf("%s: answered %d, want %d", tt.name, results[i], tt.wantCode)
		}
		if tt.wantLine != "" && !have[tt.wantLine] {
			t.Errorf("%s: line %q not in Loki", tt.name, tt.wantLine)
		}
	}
	// The function's own lines of both invocations made it too.
	for _, l := range o.lines {
		if !have[l.Text] {
			t.Fatalf("function line %q missing after the bad input", l.Text)
		}
	}
}

// docs/lambda-runtime-contract.md#delivery: an overflowing buffer makes Lambda
// drop records and report platform.logsDropped, and the runtimeDone the lifecycle
// waits for can be among them. The invocation must not then be held (and billed)
// until its deadline: the extension gives up on it soon after telemetry goes
// quiet, and the invocation's lines still reach Loki.
func TestLostRuntimeDoneDoesNotHoldTheInvocation(t *testing.T) {
	srv := e2etest.Loki(t)
	var runtimeDones atomic.Int32
	o := run(t, script{
		cfg: sandbox.Config{FunctionTimeout: 5 * time.Second, DropEvent: func(eventType string) bool {
			// Lose the second invocation's runtimeDone only.
			return eventType == "platform.runtimeDone" && runtimeDones.Add(1) == 2
		}},
		invokes: 3, gap: 200 * time.Millisecond, fn: sandbox.Function{Lines: 10},
	})
	if st := o.sb.Stats(); st.DroppedRecords != 1 || st.LogsDroppedEvents != 1 {
		t.Fatalf("the emulator dropped %d records in %d reports, want the one runtimeDone", st.DroppedRecords, st.LogsDroppedEvents)
	}
	// Without the runtimeDone the wait would last until the deadline minus
	// the margin, about 4.9 s; it ends TELEMETRY_TIMEOUT_MS + 250 ms after
	// the last batch instead.
	if held := o.invokes[1].PostRuntime; held > 2*time.Second {
		t.Errorf("the invocation whose runtimeDone was lost was held %s after the runtime finished", held)
	}
	if out := o.sb.ExtensionOutput(); !strings.Contains(out, "without the runtimeDone") {
		t.Errorf("no warning about the lost runtimeDone in:\n%s", out)
	}
	if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() {
		t.Fatalf("delivery: %s", d)
	}
	t.Logf("post-runtime overhead with the runtimeDone lost: %s (others %s, %s)", o.invokes[1].PostRuntime, o.invokes[0].PostRuntime, o.invokes[2].PostRuntime)
}

// docs/lambda-runtime-contract.md#reset-after-a-failure: after a crash Lambda
// resets the sandbox at once, and the SHUTDOWN deadline runs from then, while the
// extension may still be busy with the invocation. With Loki hanging and the
// default 2 s flush budget, an extension that pushed before /next would read
// SHUTDOWN with its deadline almost gone; it must still exit by itself, in time,
// and count what it could not deliver.
func TestCrashWithLokiHangingExitsBeforeTheResetDeadline(t *testing.T) {
	srv := e2etest.Loki(t)
	p := proxy(t, faultproxy.Config{Upstream: srv.URL()})
	p.SetFault(faultproxy.Fault{Kind: faultproxy.Hang})
	sb := e2etest.StartSandbox(t, sandbox.Config{FunctionName: e2etest.FunctionName(t), Env: e2etest.Env(t, p.URL()+"/api/prom/push")})
	res, err := sb.Invoke(t.Context(), sandbox.Function{Lines: 7, Outcome: sandbox.Crash})
	if err != nil {
		t.Fatal(err)
	}
	if res.Reset == nil {
		t.Fatal("the crash did not reset the sandbox")
	}
	if sd := res.Reset; sd.Killed || sd.ExitCode != 0 {
		t.Fatalf("reset: killed %v, exit code %d, took %s", sd.Killed, sd.ExitCode, sd.Duration)
	}
	if out := sb.ExtensionOutput(); !regexp.MustCompile(`shutting down with \d+ lines undelivered`).MatchString(out) {
		t.Fatalf("the undelivered lines were not counted:\n%s", out)
	}
}
