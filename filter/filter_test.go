package filter

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/loglevel"
)

const (
	id = "8f5e4c3a-1b2d-4e6f-9a7b-0c1d2e3f4a5b"
	// Patterns as the README shows them.
	emailPattern  = `[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`
	bearerPattern = `(Bearer )[A-Za-z0-9._~+/-]+=*`
)

func node(level, msg string) string {
	return "2024-05-15T23:59:20.159Z\t" + id + "\t" + level + "\t" + msg
}

func TestNewRefusesBadRules(t *testing.T) {
	ok := Rule{Type: ExcludeAtMatch, Name: "health", Pattern: "GET /health"}
	tests := []struct {
		name  string
		rules []Rule
		want  []string // substrings of the error, in order
	}{
		{"unknown type", []Rule{ok, {Type: "multi_line", Name: "ml", Pattern: "x"}},
			[]string{`rule 2 "ml": unknown type "multi_line": want exclude_at_match, include_at_match or mask_sequences`}},
		{"no name", []Rule{{Type: ExcludeAtMatch, Pattern: "x"}}, []string{`rule 1 "": has no name`}},
		{"name with a space", []Rule{{Type: ExcludeAtMatch, Name: "drop health", Pattern: "x"}}, []string{`rule 1 "drop health": name must be`}},
		{"name too long", []Rule{{Type: ExcludeAtMatch, Name: strings.Repeat("n", 65), Pattern: "x"}}, []string{`name must be 1 to 64`}},
		{"reserved name", []Rule{{Type: ExcludeAtMatch, Name: MinLevelRule, Pattern: "x"}}, []string{`rule 1 "min_level": name "min_level" is taken`}},
		{"same name twice", []Rule{ok, ok}, []string{`rule 2 "health": another rule has the same name`}},
		{"empty pattern", []Rule{{Type: IncludeAtMatch, Name: "all", Pattern: ""}}, []string{`rule 1 "all": pattern is empty`}},
		{"pattern does not compile", []Rule{ok, {Type: MaskSequences, Name: "mask_tokens", Pattern: "(unclosed", Placeholder: "x"}},
			[]string{`rule 2 "mask_tokens": pattern does not compile: error parsing regexp: missing closing )`}},
		{"Perl lookahead, which RE2 refuses", []Rule{{Type: ExcludeAtMatch, Name: "la", Pattern: `foo(?=bar)`}}, []string{`rule 1 "la": pattern does not compile`}},
		{"placeholder names a group the pattern lacks", []Rule{{Type: MaskSequences, Name: "m", Pattern: "secret=\\S+", Placeholder: "$REDACTED"}},
			[]string{`rule 1 "m": replace_placeholder refers to $REDACTED, but the pattern has no group "REDACTED"; write $$ for a literal $`}},
		{"placeholder group number too high", []Rule{{Type: MaskSequences, Name: "m", Pattern: "(a)b", Placeholder: "${2}"}}, []string{`refers to $2`}},
		{"$1x is group 1x", []Rule{{Type: MaskSequences, Name: "m", Pattern: "(a)b", Placeholder: "$1x"}}, []string{`refers to $1x`, `${1}x`}},
		{"every bad rule is reported", []Rule{{Type: "drop", Name: "a", Pattern: "x"}, ok, {Type: ExcludeAtMatch, Name: "c", Pattern: "["}},
			[]string{`rule 1 "a": unknown type`, `rule 3 "c": pattern does not compile`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := New(Config{Rules: tt.rules})
			if err == nil || f != nil {
				t.Fatalf("got %v, %v; want an error", f, err)
			}
			rest := err.Error()
			for _, want := range tt.want {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Fatalf("error %q lacks %q", err, want)
				}
				rest = rest[i+len(want):]
			}
		})
	}
}

func TestNewAcceptsGoodRules(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"min level only", Config{MinLevel: loglevel.Warn}},
		{"group by number and by name, $$ and a lone $", Config{Rules: []Rule{
			{Type: MaskSequences, Name: "bearer", Pattern: bearerPattern, Placeholder: "${1}[TOKEN]"},
			{Type: MaskSequences, Name: "user", Pattern: `user=(?P<who>\w)\w*`, Placeholder: "user=$who***"},
			{Type: MaskSequences, Name: "dollars", Pattern: `\$\d+`, Placeholder: "$$$$ and $ and $-"},
			{Type: MaskSequences, Name: "empty.placeholder-ok", Pattern: `password=\S+`, Placeholder: ""},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if f, err := New(tt.cfg); err != nil || f == nil {
				t.Fatalf("New: %v, %v", f, err)
			}
		})
	}
	if f, err := New(Config{}); f != nil || err != nil {
		t.Fatalf("an empty configuration gives %v, %v; want a nil filter", f, err)
	}
}

func TestApply(t *testing.T) {
	health := Rule{Type: ExcludeAtMatch, Name: "drop_health", Pattern: `GET /health\b`}
	onlyApp := Rule{Type: IncludeAtMatch, Name: "only_app", Pattern: `app: `}
	email := Rule{Type: MaskSequences, Name: "mask_emails", Pattern: emailPattern, Placeholder: "[EMAIL]"}
	bearer := Rule{Type: MaskSequences, Name: "mask_bearer", Pattern: bearerPattern, Placeholder: "${1}[TOKEN]"}
	tests := []struct {
		name    string
		cfg     Config
		line    string
		level   loglevel.Level
		want    string // "" when the line is dropped
		counted string // the rules the line counts for, separated by spaces
	}{
		{"nothing configured", Config{}, node("DEBUG", "x"), 0, node("DEBUG", "x"), ""},

		{"below the min level, from the text prefix", Config{MinLevel: loglevel.Info}, node("DEBUG", "noise"), 0, "", MinLevelRule},
		{"at the min level", Config{MinLevel: loglevel.Info}, node("INFO", "hello"), 0, node("INFO", "hello"), ""},
		{"above the min level", Config{MinLevel: loglevel.Info}, "[ERROR]\t2024-05-15T23:59:20.159Z\t" + id + "\tboom", 0, "[ERROR]\t2024-05-15T23:59:20.159Z\t" + id + "\tboom", ""},
		{"unknown level is shipped", Config{MinLevel: loglevel.Fatal}, "print without a prefix", 0, "print without a prefix", ""},
		{"a structured logger's JSON text line, below", Config{MinLevel: loglevel.Info}, `{"level":"DEBUG","message":"x"}`, 0, "", MinLevelRule},
		{"a structured logger's JSON text line, kept", Config{MinLevel: loglevel.Info}, `{"level":40,"msg":"x"}`, 0, `{"level":40,"msg":"x"}`, ""},
		{"the record's own level wins over the text", Config{MinLevel: loglevel.Warn}, `{"level":"DEBUG","message":"[ERROR] x"}`, loglevel.Debug, "", MinLevelRule},
		{"the record's own level, kept", Config{MinLevel: loglevel.Warn}, `{"level":50}`, loglevel.Error, `{"level":50}`, ""},
		{"no min level: levels are not read", Config{Rules: []Rule{health}}, node("TRACE", "x"), 0, node("TRACE", "x"), ""},

		{"exclude at match", Config{Rules: []Rule{health}}, node("INFO", "GET /health 200"), 0, "", "drop_health"},
		{"exclude: no match", Config{Rules: []Rule{health}}, node("INFO", "GET /healthz 200"), 0, node("INFO", "GET /healthz 200"), ""},
		{"include at match: kept", Config{Rules: []Rule{onlyApp}}, node("INFO", "app: order 42"), 0, node("INFO", "app: order 42"), ""},
		{"include at match: the others are dropped", Config{Rules: []Rule{onlyApp}}, node("INFO", "library chatter"), 0, "", "only_app"},

		{"mask every e-mail address", Config{Rules: []Rule{email}}, node("INFO", "from a.b@example.com to c+d@mail.example.org"), 0,
			node("INFO", "from [EMAIL] to [EMAIL]"), "mask_emails"},
		{"mask a bearer token, keeping the scheme", Config{Rules: []Rule{bearer}}, node("INFO", "Authorization: Bearer eyJhbGci.eyJzdWIi.SflKx-w_c= sent"), 0,
			node("INFO", "Authorization: Bearer [TOKEN] sent"), "mask_bearer"},
		{"mask: no match leaves the line as it is", Config{Rules: []Rule{email}}, node("INFO", "no address here"), 0, node("INFO", "no address here"), ""},
		{"mask: an empty match masks nothing", Config{Rules: []Rule{{Type: MaskSequences, Name: "stars", Pattern: `x*`, Placeholder: "*"}}}, "abc", 0, "abc", ""},
		{"mask: only the non-empty matches", Config{Rules: []Rule{{Type: MaskSequences, Name: "stars", Pattern: `x*`, Placeholder: "*"}}}, "axxb", 0, "a*b", "stars"},
		{"mask: literal $", Config{Rules: []Rule{{Type: MaskSequences, Name: "price", Pattern: `\$\d+`, Placeholder: "$$N"}}}, "costs $42", 0, "costs $N", "price"},

		{"rules run in order: a mask, then an exclude that sees the mask", Config{Rules: []Rule{email, {Type: ExcludeAtMatch, Name: "drop_masked", Pattern: `\[EMAIL\]`}}},
			"mail bob@example.com", 0, "", "mask_emails drop_masked"},
		{"rules run in order: the exclude first", Config{Rules: []Rule{health, email}}, "GET /health from bob@example.com", 0, "", "drop_health"},
		{"the min level comes before the rules", Config{MinLevel: loglevel.Info, Rules: []Rule{health}}, node("DEBUG", "GET /health"), 0, "", MinLevelRule},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, keep := f.Apply(tt.line, tt.level)
			if keep != (tt.want != "") || keep && got != tt.want {
				t.Fatalf("Apply(%q) = %q, %v; want %q", tt.line, got, keep, tt.want)
			}
			counted := strings.Fields(tt.counted)
			for _, name := range counted {
				if !slices.ContainsFunc(f.Counts(), func(c Count) bool { return c.Rule == name }) {
					t.Fatalf("no count for %s", name)
				}
			}
			for _, c := range f.Counts() {
				want := int64(0)
				if slices.Contains(counted, c.Rule) {
					want = 1
				}
				if c.Lines != want {
					t.Errorf("%s counted %d lines, want %d", c.Rule, c.Lines, want)
				}
			}
		})
	}
}

// JSON-format records stay valid JSON whatever a mask does, and no
// matched text survives.
func TestMaskKeepsJSONValid(t *testing.T) {
	tests := []struct {
		name        string
		pattern     string
		placeholder string
		line        string
		want        string
	}{
		{"inside a string, as plain replacement", emailPattern, "[EMAIL]",
			`{"level":"INFO","message":"mail bob@example.com now"}`, `{"level":"INFO","message":"mail [EMAIL] now"}`},
		{"a placeholder with quotes and a backslash is escaped", `token=\w+`, `"\hidden"`,
			`{"message":"token=abc"}`, `{"message":"\"\\hidden\""}`},
		{"\\S+ runs past the string's end: every matched value is masked, the structure kept", `token=\S+`, "[MASKED]",
			`{"message":"token=abc","level":"INFO"}`, `{"message":"[MASKED]","[MASKED]":"[MASKED]"}`},
		{"a number the pattern hits is replaced whole, as a string", `\b\d{13,16}\b`, "[CARD]",
			`{"time":1715817560159,"message":"card 4111111111111111"}`, `{"time":"[CARD]","message":"card [CARD]"}`},
		{"part of a number", `\d{3}`, "###", `{"n":-12345.5e3}`, `{"n":"###"}`},
		{"true, false and null", `true|null`, "X", `{"a":true,"b":null,"c":"true"}`, `{"a":"X","b":"X","c":"X"}`},
		{"a pattern written around a key keeps the JSON it wrote", `("password":")[^"]*`, "${1}***",
			`{"user":"bob","password":"hunter2","ok":true}`, `{"user":"bob","password":"***","ok":true}`},
		{"a key pattern without its leading quote still masks the value", `password":"[^"]*`, "***",
			`{"password":"hunter2"}`, `{"***":"***"}`},
		{"an escape sequence is never split", `nsecret\w*`, "[X]", `{"m":"a\nsecret42 b"}`, `{"m":"a[X] b"}`},
		{"a \\u escape is masked whole", `00e9`, "e", `{"m":"caf\u00e9"}`, `{"m":"cafe"}`},
		{"a group keeps its place inside the string", `(Bearer )\S+`, "${1}[TOKEN]",
			`{"h":"Bearer abc\"def","x":1}`, `{"h":"Bearer [TOKEN]","[TOKEN]":"[TOKEN]"}`},
		{"two secrets, the second beyond a cut", `secret=\S+`, "[S]",
			`{"a":"secret=x","b":"secret=y"}`, `{"a":"[S]","[S]":"[S]"}`},
		{"text that only looks like JSON is replaced as text", `token=\S+`, `"X"`,
			`{not json token=abc}`, `{not json "X"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := New(Config{Rules: []Rule{{Type: MaskSequences, Name: "m", Pattern: tt.pattern, Placeholder: tt.placeholder}}})
			if err != nil {
				t.Fatal(err)
			}
			got, keep := f.Apply(tt.line, loglevel.Unknown)
			if !keep || got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
			if json.Valid([]byte(tt.line)) && !json.Valid([]byte(got)) {
				t.Errorf("%s is no longer valid JSON", got)
			}
		})
	}
}

// Whatever the pattern, masking a valid JSON record leaves valid JSON in
// which the pattern finds nothing but placeholders.
func FuzzMaskKeepsJSONValid(f *testing.F) {
	f.Add(`{"message":"token=abc\"x\\y\n","level":"INFO","n":12345,"ok":true,"a":[1,"b@c.de",null]}`, `\S+`)
	f.Add(`{"m":"caf\u00e9 \ud83d\ude00"}`, `\\u\w+`)
	f.Add(`{"time":1715817560159}`, `\d{4}`)
	f.Add(`{"k":"v"}`, `"`)
	f.Add(`{"k":"v"}`, `[:,{}]`)
	f.Fuzz(func(t *testing.T, line, pattern string) {
		if !json.Valid([]byte(line)) || len(line) < 2 || line[0] != '{' || line[len(line)-1] != '}' {
			return
		}
		placeholder := `"[M]\`
		if len(pattern)%2 == 1 {
			placeholder = `"<${0}>\` // the match itself, put back through Expand
		}
		fl, err := New(Config{Rules: []Rule{{Type: MaskSequences, Name: "m", Pattern: pattern, Placeholder: placeholder}}})
		if err != nil {
			return
		}
		got, _ := fl.Apply(line, loglevel.Unknown)
		if !json.Valid([]byte(got)) {
			t.Fatalf("%s masked with %q is no longer valid JSON: %s", line, pattern, got)
		}
	})
}

func TestCountsAreSafeForConcurrentUse(t *testing.T) {
	f, err := New(Config{MinLevel: loglevel.Info, Rules: []Rule{
		{Type: ExcludeAtMatch, Name: "drop_health", Pattern: `GET /health`},
		{Type: MaskSequences, Name: "mask_emails", Pattern: emailPattern, Placeholder: "[EMAIL]"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{node("DEBUG", "x"), node("INFO", "GET /health"), node("INFO", "to a@b.io"), node("INFO", "plain")}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				for _, l := range lines {
					f.Apply(l, loglevel.Unknown)
				}
			}
		})
	}
	wg.Wait()
	if got, want := Format(f.Counts()), "min_level=800 drop_health=800 mask_emails=800"; got != want {
		t.Fatalf("counts %q, want %q", got, want)
	}
	var nilFilter *Filter
	if line, keep := nilFilter.Apply("x", loglevel.Debug); !keep || line != "x" || nilFilter.Counts() != nil {
		t.Fatal("a nil filter must ship every line unchanged and count nothing")
	}
}
