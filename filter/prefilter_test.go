package filter

import (
	"regexp"
	"slices"
	"testing"
)

// The prefilter is only worth having if it rules out the ordinary lines
// for the patterns users write; and it must never rule out a line that
// matches.
func TestPrefilter(t *testing.T) {
	logLine := node("INFO", "line 1 of "+id+" order 42 shipped in 1715817560 ms")
	tests := []struct {
		pattern      string
		wantLiterals []string
		wantRun      int
		rejects      []string // lines the prefilter rules out
		passes       []string // lines it lets through (they may or may not match)
	}{
		{emailPattern, []string{"@", "."}, 6,
			[]string{logLine, "no at sign. here"}, []string{"to bob@example.com", "@ and . but no address"}},
		{bearerPattern, []string{"Bearer "}, 8,
			[]string{logLine, "bearer abc"}, []string{"Authorization: Bearer abc"}},
		{`\b(?:\d[ -]?){13,16}\b`, nil, 13,
			[]string{logLine, "2024-05-15T23:59:20.159Z", "4111 1111 11"}, []string{"card 4111 1111 1111 1111", "4111111111111111"}},
		{`GET /health\b`, []string{"GET /health"}, 11, []string{logLine}, []string{"GET /health 200", "GET /healthz"}},
		{`(?i)password=\S+`, nil, 10, []string{"pass word=x"}, []string{"PassWord=x"}},
		{`(ERROR|WARN) \d+`, []string{" "}, 6, []string{"ERRORS 1", "ERROR"}, []string{"WARN 12", "ERROR x"}},
		{`a.b`, []string{"a", "b"}, 0, []string{"xyz"}, []string{"a-b", "ba"}},
		{`x*`, nil, 0, nil, []string{""}},
		{`é{4}`, []string{"éééé"}, 4, []string{"e", "ééé"}, []string{"éééé"}},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			p := newPrefilter(tt.pattern)
			if !slices.Equal(p.literals, tt.wantLiterals) || p.minRun != tt.wantRun {
				t.Errorf("literals %q, run %d; want %q, %d", p.literals, p.minRun, tt.wantLiterals, tt.wantRun)
			}
			re := regexp.MustCompile(tt.pattern)
			for _, line := range tt.rejects {
				if p.mayMatch(line) {
					t.Errorf("lets %q through", line)
				}
				if re.MatchString(line) {
					t.Errorf("test is wrong: %q matches", line)
				}
			}
			for _, line := range tt.passes {
				if !p.mayMatch(line) {
					t.Errorf("rules %q out", line)
				}
			}
		})
	}
}

// A line the prefilter rules out never matches the pattern.
func FuzzPrefilterNeverRulesOutAMatch(f *testing.F) {
	f.Add(emailPattern, "to bob@example.com")
	f.Add(`\b(?:\d[ -]?){13,16}\b`, "card 4111-1111-1111-1111 ok")
	f.Add(`(?i)BEARER [a-z]+`, "bearer abc")
	f.Add(`\x{1F600}+|ab?c`, "ac 😀")
	f.Add(`(?s)a.b`, "a\nb")
	f.Add(`\Qa.b\E(x|)`, "a.b")
	f.Fuzz(func(t *testing.T, pattern, line string) {
		re, err := regexp.Compile(pattern)
		if err != nil {
			return
		}
		p := newPrefilter(pattern)
		if !p.mayMatch(line) && re.MatchString(line) {
			t.Fatalf("%q matches %q, but the prefilter (literals %q, run %d) ruled it out", pattern, line, p.literals, p.minRun)
		}
	})
}
