package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/faultproxy"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
	"github.com/lambda-loki/grafana-loki-extension/telemetryApi"
)

// Finding one invocation is a structured-metadata filter, not a scan of
// every line: `| request_id="…"` returns exactly that invocation's lines,
// its own and, with platform lines on, its START, END and REPORT; and under
// active tracing `| trace_id="…"` (the X-Ray trace ID in the form Tempo
// uses) returns the same. In adaptive mode with invocations 10 ms apart,
// an invocation's last lines and the next one's first travel in one
// telemetry batch, so the listener must tell them apart by platform.start.
func TestRequestAndTraceIDsFindOneInvocation(t *testing.T) {
	tests := []struct {
		format  string
		tracing bool
	}{
		{"text", true},
		{"json", true},
		{"text", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s, tracing %v", tt.format, tt.tracing), func(t *testing.T) {
			srv := e2etest.Loki(t)
			o := run(t, script{
				cfg:     sandbox.Config{LogFormat: tt.format, ActiveTracing: tt.tracing},
				env:     []string{"FLUSH_STRATEGY=adaptive", "SHIP_PLATFORM_LOGS=true"},
				invokes: 6, gap: 10 * time.Millisecond,
				fn: sandbox.Function{Lines: 8, Duration: 5 * time.Millisecond},
			})
			for i, inv := range o.invokes {
				want := map[string]bool{}
				for _, l := range inv.Lines {
					want[l.Text] = true
				}
				got := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q} | request_id=%q`, o.function, inv.RequestID), o.start, "")
				platform := 0
				for _, l := range got {
					switch {
					case want[l.Line]:
						delete(want, l.Line)
					case strings.HasPrefix(l.Line, "START RequestId: "+inv.RequestID), strings.HasPrefix(l.Line, "END RequestId: "+inv.RequestID),
						strings.HasPrefix(l.Line, "REPORT RequestId: "+inv.RequestID):
						platform++
					default:
						t.Errorf("invocation %d: request_id=%s matched a line of another: %q", i, inv.RequestID, l.Line)
					}
				}
				if len(want) != 0 || platform != 3 {
					t.Errorf("invocation %d: %d of its lines missing, %d of START/END/REPORT found", i, len(want), platform)
				}
				traced := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q} | trace_id!=""`, o.function), o.start, "")
				if !tt.tracing {
					if len(traced) != 0 {
						t.Fatalf("%d lines carry a trace ID without active tracing", len(traced))
					}
					continue
				}
				traceID, ok := telemetryApi.TraceIDFromXRay(inv.TraceHeader)
				if !ok {
					t.Fatalf("invocation %d: no trace header from the emulator", i)
				}
				byTrace := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q} | trace_id=%q`, o.function, traceID), o.start, "")
				if texts(byTrace) != texts(got) {
					t.Errorf("invocation %d: trace_id=%s found\n%s\nrequest_id found\n%s", i, traceID, texts(byTrace), texts(got))
				}
			}
		})
	}
}

func texts(lines []lokiserver.Line) string {
	var out []string
	for _, l := range lines {
		out = append(out, l.Line)
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// A Loki that refuses structured metadata (Loki 2, or
// allow_structured_metadata: false) answers 400: the lines go again without
// it, once, every line is delivered, one warning says so, and later pushes
// do not try again.
func TestLokiRefusingStructuredMetadata(t *testing.T) {
	srv := e2etest.StartLoki(t, lokiserver.Options{Limits: "\n  allow_structured_metadata: false"})
	p := proxy(t, faultproxy.Config{Upstream: srv.URL()})
	const invokes = 4
	o := run(t, script{
		pushURL: p.URL() + "/api/prom/push",
		cfg:     sandbox.Config{ActiveTracing: true},
		invokes: invokes, gap: 100 * time.Millisecond, fn: sandbox.Function{Lines: 10},
	})
	if d := e2etest.CheckDelivery(t, srv, o.function, o.lines, o.start); !d.Complete() {
		t.Fatalf("delivery: %s", d)
	}
	out := o.sb.ExtensionOutput()
	if n := strings.Count(out, "Loki refuses structured metadata"); n != 1 {
		t.Fatalf("warned %d times, want once:\n%s", n, out)
	}
	// One push per invocation and one at SHUTDOWN at most, plus the one
	// refused push sent again.
	if st := p.Stats(); st.Requests > invokes+2 {
		t.Fatalf("%d requests for %d windows: the refusal is retried", st.Requests, invokes+1)
	}
}
