package config

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/filter"
	"github.com/lambda-loki/grafana-loki-extension/loglevel"
)

func TestLoadFilter(t *testing.T) {
	tests := []struct {
		name  string
		level string
		rules string
		want  filter.Config
	}{
		{"nothing set", "", "", filter.Config{}},
		{"min level, any case", "Warning", "", filter.Config{MinLevel: loglevel.Warn}},
		{"empty list", "", " [ ] ", filter.Config{}},
		{"every type, in order", "info",
			`[{"type":"exclude_at_match","name":"drop_health","pattern":"GET /health"},
			  {"type":"include_at_match","name":"app_only","pattern":"app: "},
			  {"type":"mask_sequences","name":"mask_emails","pattern":"[\\w.+-]+@[\\w-]+\\.[\\w.]+","replace_placeholder":"[EMAIL]"},
			  {"type":"mask_sequences","name":"drop_passwords","pattern":"password=\\S+","replace_placeholder":""}]`,
			filter.Config{MinLevel: loglevel.Info, Rules: []filter.Rule{
				{Type: filter.ExcludeAtMatch, Name: "drop_health", Pattern: "GET /health"},
				{Type: filter.IncludeAtMatch, Name: "app_only", Pattern: "app: "},
				{Type: filter.MaskSequences, Name: "mask_emails", Pattern: `[\w.+-]+@[\w-]+\.[\w.]+`, Placeholder: "[EMAIL]"},
				{Type: filter.MaskSequences, Name: "drop_passwords", Pattern: `password=\S+`, Placeholder: ""},
			}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(env("LOKI_IP", "x", "LOKI_MIN_LEVEL", tt.level, "LOKI_PROCESSING_RULES", tt.rules))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Filter.MinLevel != tt.want.MinLevel || !slices.Equal(cfg.Filter.Rules, tt.want.Rules) {
				t.Fatalf("got %+v\nwant %+v", cfg.Filter, tt.want)
			}
		})
	}
}

// A bad rule is one error per rule, naming the variable and the rule by
// position and name, and the rest of the configuration is still read.
func TestLoadFilterErrorsNameTheRule(t *testing.T) {
	tests := []struct {
		name  string
		env   []string
		wants []string
	}{
		{"unknown level", []string{"LOKI_MIN_LEVEL", "verbose"}, []string{`LOKI_MIN_LEVEL: want one of trace, debug, info, warn, error, fatal; got "verbose"`}},
		{"not JSON", []string{"LOKI_PROCESSING_RULES", `[{"type":`}, []string{`LOKI_PROCESSING_RULES: not a JSON list of rules`}},
		{"one rule instead of a list", []string{"LOKI_PROCESSING_RULES", `{"type":"exclude_at_match","name":"a","pattern":"x"}`},
			[]string{`LOKI_PROCESSING_RULES: not a JSON list of rules [{"type": "exclude_at_match" | "include_at_match" | "mask_sequences"`}},
		{"a string in the list", []string{"LOKI_PROCESSING_RULES", `["GET /health"]`}, []string{`LOKI_PROCESSING_RULES: rule 1 "": want an object {"type"`}},
		{"misspelt key", []string{"LOKI_PROCESSING_RULES", `[{"type":"mask_sequences","name":"mask_tokens","pattern":"x","replace_placeholdr":"y"}]`},
			[]string{`LOKI_PROCESSING_RULES: rule 1 "mask_tokens": unknown field "replace_placeholdr"`}},
		{"pattern not a string", []string{"LOKI_PROCESSING_RULES", `[{"type":"exclude_at_match","name":"n","pattern":42}]`},
			[]string{`LOKI_PROCESSING_RULES: rule 1 "n": "pattern" must be a JSON string`}},
		{"mask without a placeholder", []string{"LOKI_PROCESSING_RULES", `[{"type":"mask_sequences","name":"m","pattern":"x"}]`},
			[]string{`LOKI_PROCESSING_RULES: rule 1 "m": mask_sequences needs "replace_placeholder"`}},
		{"placeholder on an exclude", []string{"LOKI_PROCESSING_RULES", `[{"type":"exclude_at_match","name":"e","pattern":"x","replace_placeholder":"y"}]`},
			[]string{`LOKI_PROCESSING_RULES: rule 1 "e": "replace_placeholder" is only for mask_sequences`}},
		{"unknown type", []string{"LOKI_PROCESSING_RULES", `[{"type":"exclude_at_match","name":"a","pattern":"x"},{"type":"multi_line","name":"b","pattern":"x"}]`},
			[]string{`LOKI_PROCESSING_RULES: rule 2 "b": unknown type "multi_line"`}},
		{"pattern does not compile, and a second bad rule", []string{"LOKI_PROCESSING_RULES",
			`[{"type":"exclude_at_match","name":"ok","pattern":"x"},{"type":"mask_sequences","name":"mask_tokens","pattern":"(token","replace_placeholder":"x"},{"type":"include_at_match","name":"ok","pattern":"y"}]`},
			[]string{`LOKI_PROCESSING_RULES: rule 2 "mask_tokens": pattern does not compile: error parsing regexp: missing closing )`,
				`LOKI_PROCESSING_RULES: rule 3 "ok": another rule has the same name`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(env(append(tt.env, "LOKI_IP", "x", "AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9999")...))
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tt.wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tt.wants) {
				t.Errorf("%d errors, want %d: %q", n, len(tt.wants), err)
			}
			if cfg.RuntimeAPI != "127.0.0.1:9999" || len(cfg.Filter.Rules) != 0 {
				t.Fatalf("want the lifecycle settings and no rules: %+v", cfg)
			}
		})
	}
}

// The README's example rules load, and do to its example lines what it says.
func TestREADMEProcessingRulesExample(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "### Dropping and masking lines before they leave")
	_, block, ok2 := strings.Cut(section, "```json\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("the README has no JSON example under its section on dropping and masking lines")
	}
	cfg, err := Load(env("LOKI_IP", "x", "LOKI_PROCESSING_RULES", block))
	if err != nil {
		t.Fatal(err)
	}
	f, err := filter.New(cfg.Filter)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want string }{
		{"user alice@example.com signed in", "user [EMAIL] signed in"},
		{"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln-_", "Authorization: Bearer [TOKEN]"},
		{"GET /health 200", ""},
		{"GET /healthz 200", "GET /healthz 200"},
	}
	for _, tt := range tests {
		got, keep := f.Apply(tt.in, loglevel.Unknown)
		if !keep {
			got = ""
		}
		if got != tt.want {
			t.Errorf("%q ships as %q, want %q", tt.in, got, tt.want)
		}
	}
}
