package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/scenario"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// processingRules is LOKI_PROCESSING_RULES as a user would set it: drop
// health checks, keep only the application's own lines, mask e-mail
// addresses and bearer tokens (the README's examples).
const processingRules = `[
  {"type": "exclude_at_match", "name": "drop_health_checks", "pattern": "GET /health\\b"},
  {"type": "include_at_match", "name": "app_lines_only", "pattern": "app: "},
  {"type": "mask_sequences", "name": "mask_emails", "pattern": "[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}", "replace_placeholder": "[EMAIL]"},
  {"type": "mask_sequences", "name": "mask_bearer_tokens", "pattern": "(Bearer )[A-Za-z0-9._~+/-]+=*", "replace_placeholder": "${1}[TOKEN]"}
]`

// secrets are what must never reach Loki.
var secrets = []string{"alice@example.com", "bob@example.org", "carol@example.net", "dave@example.com", "eyJhbGciOiJIUzI1NiJ9"}

// summaryField reads a field of the extension's shutdown summary.
func summaryField(t *testing.T, output, name string) string {
	t.Helper()
	for _, line := range strings.Split(output, "\n") {
		if !strings.Contains(line, `msg="shut down"`) {
			continue
		}
		if m := regexp.MustCompile(`\b` + name + `="([^"]*)"`).FindStringSubmatch(line); m != nil {
			return m[1]
		}
		return ""
	}
	t.Fatalf("no shutdown summary in the extension's output")
	return ""
}

// With LOKI_MIN_LEVEL and a rule of each type, Loki holds exactly the
// lines that pass, masked, in the text and the JSON log format; the lines
// that say an invocation failed are there although no rule would let them
// through; nothing of a secret is anywhere in Loki; and the shutdown
// summary counts what each rule dropped or masked.
func TestLevelFilterRulesAndMasks(t *testing.T) {
	const (
		healthCheck = "app: GET /health 200"
		alice       = "app: user alice@example.com signed in"
		bearer      = "app: calling billing with Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
		twoEmails   = "app: order 42 shipped to bob@example.org and carol@example.net"
		chatter     = "library chatter without the marker"
		plain       = "app: order 43 shipped"
		dave        = "app: payment failed for dave@example.com"
	)
	// What each message becomes in Loki; "" for a line that is dropped.
	shipped := map[string]string{
		"app: cache miss for key 42": "", // DEBUG, below LOKI_MIN_LEVEL
		healthCheck:                  "", // excluded (or DEBUG)
		alice:                        "app: user [EMAIL] signed in",
		bearer:                       "app: calling billing with Authorization: Bearer [TOKEN]",
		twoEmails:                    "app: order 42 shipped to [EMAIL] and [EMAIL]",
		chatter:                      "", // not included
		plain:                        plain,
		dave:                         "app: payment failed for [EMAIL]",
		"app: about to crash":        "", // DEBUG
	}
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			srv := e2etest.Loki(t)
			o := runFunctions(t, sandbox.Config{LogFormat: format}, []string{"LOKI_MIN_LEVEL=info", "LOKI_PROCESSING_RULES=" + processingRules},
				200*time.Millisecond,
				sandbox.Function{Level: "DEBUG", Messages: []string{"app: cache miss for key 42", healthCheck}},
				sandbox.Function{Level: "INFO", Messages: []string{healthCheck, alice, bearer, twoEmails, chatter, plain}},
				sandbox.Function{Level: "ERROR", Messages: []string{dave}},
				// A crash resets the sandbox: the extension writes the lines
				// that say so, which no rule may drop.
				sandbox.Function{Level: "DEBUG", Messages: []string{"app: about to crash"}, Outcome: sandbox.Crash},
			)
			var want []sandbox.Line
			for _, l := range o.lines {
				msg := ""
				for m := range shipped {
					if strings.Contains(l.Text, m) {
						msg = m
					}
				}
				if msg == "" {
					t.Fatalf("the function wrote %q, which the test does not expect", l.Text)
				}
				if shipped[msg] != "" {
					want = append(want, sandbox.Line{Time: l.Time, Text: strings.Replace(l.Text, msg, shipped[msg], 1)})
				}
			}
			if len(want) != 5 {
				t.Fatalf("%d lines should pass, want 5: %q", len(want), want)
			}
			crashed := o.invokes[3].RequestID
			for _, prefix := range []string{
				"Invocation failed: RequestId: " + crashed + " Status: failure Error Type: Runtime.ExitError",
				"SHUTDOWN Reason: failure RequestId: " + crashed,
			} {
				found := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q, type=""} |= %q`, o.function, prefix), o.start, "")
				if len(found) != 1 {
					t.Fatalf("%d lines %q in Loki, want 1", len(found), prefix)
				}
				want = append(want, sandbox.Line{Time: found[0].Time, Text: found[0].Line})
			}
			if d := e2etest.CheckDelivery(t, srv, o.function, want, o.start); !d.Complete() {
				t.Fatalf("Loki does not hold exactly the lines that pass: %s", d)
			}
			for _, s := range secrets {
				if n := e2etest.Count(t, srv, fmt.Sprintf(`{function=%q} |= %q`, o.function, s), o.start); n != 0 {
					t.Errorf("%d lines in Loki hold %q", n, s)
				}
			}
			if format == "json" {
				// Masked records are still JSON that LogQL parses.
				parsed := e2etest.Query(t, srv, fmt.Sprintf(`{function=%q} | json | __error__="" | message=~"app: .*"`, o.function), o.start, "")
				if len(parsed) != 5 {
					t.Errorf("| json parsed %d of the 5 records shipped", len(parsed))
				}
			}

			out := o.sb.ExtensionOutput()
			// The listener also made the line that says the invocation
			// failed, from its runtimeDone.
			if s, err := scenario.ParseSummary(out); err != nil {
				t.Error(err)
			} else if err := s.Check(len(o.lines)+1, len(want)); err != nil || s.FilteredLines != 5 || s.Added != 1 {
				t.Errorf("the shutdown summary does not account for every line (%d filtered, %d added): %v", s.FilteredLines, s.Added, err)
			}
			if got, want := summaryField(t, out, "filtered"), "min_level=3 drop_health_checks=1 app_lines_only=1"; got != want {
				t.Errorf("summary filtered=%q, want %q", got, want)
			}
			if got, want := summaryField(t, out, "masked"), "mask_emails=3 mask_bearer_tokens=1"; got != want {
				t.Errorf("summary masked=%q, want %q", got, want)
			}
		})
	}
}

// A structured logger that prints its own JSON (Powertools, pino) gets no
// runtime prefix in the text log format: LOKI_MIN_LEVEL reads the line's
// top-level "level", a name or a pino number, and a line without one is
// shipped.
func TestMinLevelReadsJSONTextLines(t *testing.T) {
	srv := e2etest.Loki(t)
	o := runFunctions(t, sandbox.Config{LogFormat: "text"}, []string{"LOKI_MIN_LEVEL=info"}, 0,
		sandbox.Function{Raw: true, Messages: []string{
			`{"level":"DEBUG","location":"handler:12","message":"powertools debug"}`,
			`{"level":"INFO","location":"handler:14","message":"powertools info"}`,
			`{"level":20,"time":1715817560159,"msg":"pino debug"}`,
			`{"level":50,"time":1715817560160,"msg":"pino error"}`,
			`{"ctx":{"level":"debug"},"msg":"nested level only"}`,
			"plain print",
		}})
	var want []sandbox.Line
	for _, l := range o.lines {
		if !strings.Contains(l.Text, "powertools debug") && !strings.Contains(l.Text, "pino debug") {
			want = append(want, l)
		}
	}
	if len(want) != 4 {
		t.Fatalf("%d lines should pass, want 4: %q", len(want), want)
	}
	if d := e2etest.CheckDelivery(t, srv, o.function, want, o.start); !d.Complete() {
		t.Fatalf("Loki does not hold exactly the lines at or above info: %s", d)
	}
	if got, want := summaryField(t, o.sb.ExtensionOutput(), "filtered"), "min_level=2"; got != want {
		t.Errorf("summary filtered=%q, want %q", got, want)
	}
}

// A bad rule is one configuration error naming the variable and the rule,
// and then the extension ships nothing but keeps the function working,
// like any bad configuration.
func TestBadProcessingRuleDegrades(t *testing.T) {
	tests := []struct {
		name, rules, wantError string
	}{
		{"not JSON", `[{"type": "exclude_at_match",`, `LOKI_PROCESSING_RULES: not a JSON list of rules`},
		{"unknown type", `[{"type": "drop", "name": "drop_debug", "pattern": "DEBUG"}]`,
			`LOKI_PROCESSING_RULES: rule 1 "drop_debug": unknown type "drop"`},
		{"pattern does not compile", `[{"type": "exclude_at_match", "name": "ok", "pattern": "x"}, {"type": "mask_sequences", "name": "mask_tokens", "pattern": "token=(\\S+", "replace_placeholder": "token=***"}]`,
			`LOKI_PROCESSING_RULES: rule 2 "mask_tokens": pattern does not compile`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := e2etest.Loki(t)
			o := run(t, script{
				env: []string{"LOKI_PROCESSING_RULES=" + tt.rules}, invokes: 2, gap: 100 * time.Millisecond,
				fn: sandbox.Function{Lines: 3},
			})
			for i, inv := range o.invokes {
				if inv.PostRuntime > 500*time.Millisecond {
					t.Errorf("invoke %d: post-runtime overhead %s", i, inv.PostRuntime)
				}
			}
			out := strings.ReplaceAll(o.sb.ExtensionOutput(), `\"`, `"`) // logrus quotes the message
			if !strings.Contains(out, tt.wantError) || strings.Count(out, "invalid configuration") != 1 || !strings.Contains(out, "shipping no logs") {
				t.Fatalf("want one error with %q and the degraded-mode warning in the extension's output:\n%s", tt.wantError, out)
			}
			if n := e2etest.Count(t, srv, fmt.Sprintf(`{function=%q}`, o.function), o.start); n != 0 {
				t.Fatalf("%d lines shipped with a bad rule", n)
			}
		})
	}
}
