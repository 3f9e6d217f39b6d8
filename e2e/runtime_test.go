package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/lambda-loki/grafana-loki-extension/internal/delivery"
	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/internal/runtimes"
	"github.com/lambda-loki/grafana-loki-extension/loglevel"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
	"github.com/lambda-loki/grafana-loki-extension/telemetryApi"
)

// realRuntimes are the article's test functions (functions/), each run by
// its real runtime as the sandbox's runtime process.
var realRuntimes = runtimes.Languages()

// realFunction builds a row's function, or skips the test with the
// getter's hint when a toolchain is missing (under CI it fails instead).
func realFunction(t *testing.T, get func(context.Context, io.Writer) (runtimes.Function, error)) *runtimes.Function {
	t.Helper()
	fn, err := get(t.Context(), testWriter{t})
	switch {
	case errors.Is(err, runtimes.ErrToolchainMissing) && os.Getenv("CI") == "":
		t.Skip(err.Error())
	case err != nil:
		t.Fatal(err)
	}
	return &fn
}

// testWriter logs a build's progress in the test's output.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// invocationEvent is the functions' event (functions-spec: marker, action).
func invocationEvent(marker, action string) sandbox.Function {
	payload, _ := json.Marshal(map[string]string{"marker": marker, "action": action})
	return sandbox.Function{Payload: payload}
}

// specLevel is the level the functions' spec gives the line of a message.
func specLevel(text string) string {
	for _, level := range []string{"debug", "warn", "error"} {
		if strings.Contains(text, level+" line ") {
			return level
		}
	}
	return "info"
}

// The real runtimes, on demand and on Managed Instances, in the text and the
// JSON log format, against a real Loki (docs/lambda-runtime-contract.md#runtime-api,
// #text-and-json-records): each invocation's seven lines arrive once, with
// their own timestamps, the multi-line message as one line; each names its
// request and, under active tracing, its trace (on Managed Instances in the
// text format only a line that is a JSON object with a requestId can); the
// level is the record's; an error and a timeout are said so by the
// platform lines.
func TestRealRuntimes(t *testing.T) {
	modes := []struct {
		name string
		mode sandbox.Mode
	}{{"on-demand", sandbox.ModeOnDemand}, {"managed instances", sandbox.ModeManagedInstances}}
	for _, rt := range realRuntimes {
		for _, m := range modes {
			for _, format := range []string{"text", "json"} {
				t.Run(rt.Name+"/"+m.name+"/"+format, func(t *testing.T) {
					fn := realFunction(t, rt.Build)
					srv := e2etest.Loki(t)
					// DEBUG: the spec's debug line is written in both formats.
					cfg := sandbox.Config{Runtime: fn, Mode: m.mode, LogFormat: format, LogLevel: "DEBUG", ActiveTracing: true, FunctionTimeout: 2 * time.Second}
					marker := fmt.Sprintf("mk%d", time.Now().UnixNano()%1_000_000_000)
					// The timeout resets the environment (ends it on Managed Instances): last.
					o := runFunctions(t, cfg, []string{"SHIP_PLATFORM_LOGS=true"}, 50*time.Millisecond,
						invocationEvent(marker+"-ok", "ok"), invocationEvent(marker+"-fail", "fail"), invocationEvent(marker+"-timeout", "timeout"))
					for i, want := range []string{"success", "error", "timeout"} {
						if got := o.invokes[i].Status; got != want {
							t.Fatalf("invocation %d: status %s, want %s", i, got, want)
						}
					}
					var resp struct {
						OK     bool   `json:"ok"`
						Marker string `json:"marker"`
					}
					if err := json.Unmarshal(o.invokes[0].Response, &resp); err != nil || !resp.OK || resp.Marker != marker+"-ok" {
						t.Fatalf("response %s (%v)", o.invokes[0].Response, err)
					}
					for _, inv := range o.invokes {
						checkRealInvocation(t, srv, o, inv, m.mode, format)
					}
					checkFailureLines(t, srv, o, m.mode)
				})
			}
		}
	}
}

// specMessages are the beginnings of the seven lines the functions' spec
// has every invocation write, each followed by the invocation's marker.
var specMessages = []string{"debug line ", "info line ", "warn line ", "error line ", "multi line ", "structured line ", "contact alice@example.com "}

// checkRealInvocation checks one invocation's lines in Loki against what the
// runtime wrote.
func checkRealInvocation(t *testing.T, srv *lokiserver.Server, o outcome, inv sandbox.InvokeResult, mode sandbox.Mode, format string) {
	t.Helper()
	marker := markerOf(t, inv.Lines)
	// The spec's seven lines, once each; the runtime may add its own (Go's
	// logs a handler's error).
	for _, msg := range specMessages {
		n := 0
		for _, l := range inv.Lines {
			if strings.Contains(l.Text, msg+marker) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("invocation %s: %d lines %q, want 1 of the spec's: %q", inv.RequestID, n, msg+marker, inv.Lines)
		}
	}
	got := e2etest.Query(t, srv, fmt.Sprintf(`%s |= %q`, delivery.Selector(o.function), marker), o.start, "")
	if d := delivery.Compare(withMarker(inv.Lines, marker), got); !d.Complete() {
		t.Fatalf("invocation %s: %s", inv.RequestID, d)
	}
	traceID, _ := telemetryApi.TraceIDFromXRay(inv.TraceHeader)
	multi := 0
	for _, l := range got {
		if strings.Contains(l.Line, "multi line "+marker) {
			multi++
			if !strings.Contains(l.Line, "second line") || !strings.Contains(l.Line, "third line") {
				t.Errorf("the multi-line message was cut: %q", l.Line)
			}
		}
		// Lambda cannot tell concurrent invocations' lines apart; a JSON
		// object that names its request can.
		named := mode != sandbox.ModeManagedInstances ||
			strings.HasPrefix(strings.TrimSpace(l.Line), "{") && strings.Contains(l.Line, `"requestId":"`+inv.RequestID+`"`)
		wantID, wantTrace := inv.RequestID, traceID
		if !named {
			wantID, wantTrace = "", ""
		}
		if l.Labels["request_id"] != wantID || l.Labels["trace_id"] != wantTrace {
			t.Errorf("%q: request_id %q trace_id %q, want %q %q", l.Line, l.Labels["request_id"], l.Labels["trace_id"], wantID, wantTrace)
		}
		// The level is the record's: every JSON record's, and a text line's
		// when it is a JSON object.
		// Lines a runtime adds itself (its record of a handler's error) have
		// the runtime's level, not the spec's.
		spec := slices.ContainsFunc(specMessages, func(m string) bool { return strings.Contains(l.Line, m+marker) })
		if spec && (format == "json" || strings.HasPrefix(l.Line, "{")) && loglevel.Parse(l.Labels["level"]).String() != specLevel(l.Line) {
			t.Errorf("%q: level %q, want %s", l.Line, l.Labels["level"], specLevel(l.Line))
		}
	}
	if multi != 1 {
		t.Errorf("the multi-line message is %d Loki lines, want 1", multi)
	}
}

// withMarker are the lines that name the marker: those the function wrote,
// not lines the runtime adds without it (a stack trace's).
func withMarker(lines []sandbox.Line, marker string) []sandbox.Line {
	var out []sandbox.Line
	for _, l := range lines {
		if strings.Contains(l.Text, marker) {
			out = append(out, l)
		}
	}
	return out
}

// markerOf finds the marker of an invocation's lines ("info line <marker>").
func markerOf(t *testing.T, lines []sandbox.Line) string {
	t.Helper()
	for _, l := range lines {
		if _, after, ok := strings.Cut(l.Text, "info line "); ok {
			if end := strings.IndexFunc(after, func(r rune) bool { return r != '-' && !unicode.IsLetter(r) && !unicode.IsDigit(r) }); end >= 0 {
				after = after[:end]
			}
			return after
		}
	}
	t.Fatalf("no info line in %q", lines)
	return ""
}

// checkFailureLines checks that the platform lines say the second
// invocation failed and the third timed out: REPORT with the status in both
// modes, and outside Managed Instances (which has no runtimeDone) the line
// on the function's stream that says so.
func checkFailureLines(t *testing.T, srv *lokiserver.Server, o outcome, mode sandbox.Mode) {
	t.Helper()
	failed, timedOut := o.invokes[1].RequestID, o.invokes[2].RequestID
	want := []string{
		`{type="platform"} |= "REPORT RequestId: ` + failed + `" |= "Status: error"`,
		`{type="platform"} |= "REPORT RequestId: ` + timedOut + `" |= "Status: timeout"`,
	}
	if mode != sandbox.ModeManagedInstances {
		want = append(want,
			`{type=""} |= "Invocation failed: RequestId: `+failed+` Status: error"`,
			`{type=""} |= "Task timed out: RequestId: `+timedOut+` Status: timeout Error Type: Sandbox.Timeout"`)
	}
	for _, q := range want {
		query := strings.Replace(q, "{", fmt.Sprintf("{function=%q, ", o.function), 1)
		if n := e2etest.Count(t, srv, query, o.start); n != 1 {
			t.Errorf("%d lines for %s, want 1", n, query)
		}
	}
}

// LOKI_MIN_LEVEL and a mask rule act on the real runtimes' output: the
// DEBUG line is not shipped (the text format's level read from the line as
// the runtime wrote it), the e-mail address is masked, the rest arrives as
// written.
func TestRealRuntimesFiltered(t *testing.T) {
	const rules = `[{"type": "mask_sequences", "name": "mask_emails", "pattern": "[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}", "replace_placeholder": "[EMAIL]"}]`
	for _, rt := range realRuntimes {
		for _, format := range []string{"text", "json"} {
			t.Run(rt.Name+"/"+format, func(t *testing.T) {
				fn := realFunction(t, rt.Build)
				srv := e2etest.Loki(t)
				marker := fmt.Sprintf("mk%d", time.Now().UnixNano()%1_000_000_000)
				o := runFunctions(t, sandbox.Config{Runtime: fn, LogFormat: format, LogLevel: "DEBUG"}, []string{"LOKI_MIN_LEVEL=info", "LOKI_PROCESSING_RULES=" + rules}, 0,
					invocationEvent(marker, "ok"))
				wrote := withMarker(o.lines, marker)
				if !slices.ContainsFunc(wrote, func(l sandbox.Line) bool { return specLevel(l.Text) == "debug" }) {
					t.Fatalf("the function wrote no debug line, so LOKI_MIN_LEVEL is not tested: %q", o.lines)
				}
				var want []sandbox.Line
				for _, l := range wrote {
					switch {
					case specLevel(l.Text) == "debug":
					case strings.Contains(l.Text, "alice@example.com"):
						want = append(want, sandbox.Line{Time: l.Time, Text: strings.Replace(l.Text, "alice@example.com", "[EMAIL]", 1)})
					default:
						want = append(want, l)
					}
				}
				if len(want) != 6 {
					t.Fatalf("%d of the spec's lines at or above info, want 6: %q", len(want), o.lines)
				}
				got := e2etest.Query(t, srv, fmt.Sprintf(`%s |= %q`, delivery.Selector(o.function), marker), o.start, "")
				if d := delivery.Compare(want, got); !d.Complete() {
					t.Fatalf("Loki does not hold exactly the lines at or above info, masked: %s", d)
				}
				if n := e2etest.Count(t, srv, fmt.Sprintf(`{function=%q} |= "alice@example.com"`, o.function), o.start); n != 0 {
					t.Fatalf("%d lines with the address in Loki", n)
				}
			})
		}
	}
}
