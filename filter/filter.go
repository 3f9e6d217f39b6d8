// Package filter decides, line by line, what leaves the sandbox: a minimum
// level, and processing rules in the shape Lambda users know from Datadog's
// (exclude_at_match, include_at_match, mask_sequences; see
// https://docs.datadoghq.com/agent/logs/advanced_log_collection/#filter-logs),
// applied in order before a line is queued.
//
// Patterns are Go regular expressions (RE2 syntax,
// https://pkg.go.dev/regexp/syntax): matching takes time linear in the
// line's length whatever the pattern, so no rule can hang the extension.
// A pattern matches the line as it would be shipped: the text as the
// runtime wrote it, or for a JSON-format record its compact JSON text.
package filter

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"github.com/lambda-loki/grafana-loki-extension/loglevel"
)

// Type is what a rule does with a line its pattern matches.
type Type string

const (
	// ExcludeAtMatch drops every line the pattern matches.
	ExcludeAtMatch Type = "exclude_at_match"
	// IncludeAtMatch drops every line the pattern does not match.
	IncludeAtMatch Type = "include_at_match"
	// MaskSequences replaces every match with the rule's placeholder.
	MaskSequences Type = "mask_sequences"
	// BelowMinLevel is not a rule type one can configure: it is the type of
	// the count of lines dropped for their level (see MinLevelRule).
	BelowMinLevel Type = "min_level"
)

// MinLevelRule is the name the lines dropped for their level are counted
// under; no rule may take it.
const MinLevelRule = "min_level"

// maxNameLen bounds a rule's name, which appears in the extension's log.
const maxNameLen = 64

// Rule is one processing rule.
type Rule struct {
	Type Type
	// Name identifies the rule in errors and in the counts; names are unique.
	Name    string
	Pattern string
	// Placeholder replaces each match of a MaskSequences rule. As with
	// regexp.Regexp.Expand, $1 or ${name} insert a group of the match and
	// $$ is a literal $.
	Placeholder string
}

// Config is what a Filter is built from.
type Config struct {
	// MinLevel drops lines of a known level below it; Unknown drops none.
	MinLevel loglevel.Level
	// Rules run in order, each on the result of the one before.
	Rules []Rule
}

// Filter applies a Config to lines and counts what each rule did. It is
// safe for concurrent use. A nil *Filter ships every line unchanged.
type Filter struct {
	minLevel loglevel.Level
	belowMin atomic.Int64
	rules    []rule
}

// rule is a compiled Rule.
type rule struct {
	typ  Type
	name string
	re   *regexp.Regexp
	pre  prefilter
	// template is the placeholder as written; jsonTemplate the same with
	// its text escaped for the inside of a JSON string, and
	// jsonValueTemplate that string quoted, to stand for a whole value.
	template, jsonTemplate, jsonValueTemplate string
	// groups is whether the placeholder refers to a group (or holds $$),
	// and so must go through Expand.
	groups bool
	// lines counts the lines the rule dropped, or masked.
	lines atomic.Int64
}

// New compiles cfg. It returns a nil Filter, which costs nothing to apply,
// when cfg has neither a minimum level nor rules. Every bad rule is
// reported, each error naming the rule by its position (from 1) and name.
func New(cfg Config) (*Filter, error) {
	if cfg.MinLevel == loglevel.Unknown && len(cfg.Rules) == 0 {
		return nil, nil
	}
	f := &Filter{minLevel: cfg.MinLevel, rules: make([]rule, len(cfg.Rules))}
	var errs []error
	seen := map[string]bool{}
	for i, r := range cfg.Rules {
		if err := compile(&f.rules[i], r, seen); err != nil {
			errs = append(errs, fmt.Errorf("rule %d %q: %w", i+1, r.Name, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return f, nil
}

func compile(dst *rule, r Rule, seen map[string]bool) error {
	switch {
	case r.Name == "":
		return errors.New("has no name; every rule needs one, to be counted under")
	case len(r.Name) > maxNameLen || strings.IndexFunc(r.Name, notNameChar) >= 0:
		return fmt.Errorf("name must be 1 to %d letters, digits, '_', '-' or '.'", maxNameLen)
	case r.Name == MinLevelRule:
		return fmt.Errorf("name %q is taken by the count of lines below LOKI_MIN_LEVEL", MinLevelRule)
	case seen[r.Name]:
		return errors.New("another rule has the same name; names must be unique, to be counted apart")
	}
	seen[r.Name] = true
	switch r.Type {
	case ExcludeAtMatch, IncludeAtMatch, MaskSequences:
	default:
		return fmt.Errorf("unknown type %q: want %s, %s or %s", r.Type, ExcludeAtMatch, IncludeAtMatch, MaskSequences)
	}
	if r.Pattern == "" {
		return errors.New("pattern is empty")
	}
	re, err := regexp.Compile(r.Pattern)
	if err != nil {
		return fmt.Errorf("pattern does not compile: %w", err)
	}
	*dst = rule{typ: r.Type, name: r.Name, re: re, pre: newPrefilter(r.Pattern)}
	if r.Type == MaskSequences {
		if err := checkTemplate(re, r.Placeholder); err != nil {
			return fmt.Errorf("replace_placeholder %w", err)
		}
		dst.template, dst.jsonTemplate = r.Placeholder, escapeJSON(r.Placeholder)
		dst.groups = strings.Contains(r.Placeholder, "$")
		dst.jsonValueTemplate = `"` + dst.jsonTemplate + `"`
	}
	return nil
}

func notNameChar(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.')
}

// Apply runs the filter over one line. level is the line's own level when
// the record carried one (a JSON-format record's "level"); with Unknown,
// and a minimum level configured, the level is read from the runtime's
// prefix of a text line. keep is false when the line must not be shipped;
// out is the line to ship, masked where a rule said so.
func (f *Filter) Apply(line string, level loglevel.Level) (out string, keep bool) {
	if f == nil {
		return line, true
	}
	if f.minLevel != loglevel.Unknown {
		if level == loglevel.Unknown {
			level = loglevel.Detect(line)
		}
		if level != loglevel.Unknown && level < f.minLevel {
			f.belowMin.Add(1)
			return line, false
		}
	}
	for i := range f.rules {
		r := &f.rules[i]
		switch r.typ {
		case ExcludeAtMatch:
			if r.match(line) {
				r.lines.Add(1)
				return line, false
			}
		case IncludeAtMatch:
			if !r.match(line) {
				r.lines.Add(1)
				return line, false
			}
		case MaskSequences:
			// Most lines hold no secret, and the prefilter says so at once;
			// mask finds the matches itself, so a line that passes is
			// searched once, not twice.
			if !r.pre.mayMatch(line) {
				continue
			}
			if masked, ok := r.mask(line); ok {
				line = masked
				r.lines.Add(1)
			}
		}
	}
	return line, true
}

// match reports whether the rule's pattern matches line.
func (r *rule) match(line string) bool {
	return r.pre.mayMatch(line) && r.re.MatchString(line)
}

// Count is what one rule did since New: the lines it dropped, or for a
// MaskSequences rule the lines it masked.
type Count struct {
	Rule  string
	Type  Type
	Lines int64
}

// Counts returns a count per rule in the configured order, led by
// MinLevelRule when a minimum level is set. Nil for a nil Filter.
func (f *Filter) Counts() []Count {
	if f == nil {
		return nil
	}
	var counts []Count
	if f.minLevel != loglevel.Unknown {
		counts = append(counts, Count{Rule: MinLevelRule, Type: BelowMinLevel, Lines: f.belowMin.Load()})
	}
	for i := range f.rules {
		r := &f.rules[i]
		counts = append(counts, Count{Rule: r.name, Type: r.typ, Lines: r.lines.Load()})
	}
	return counts
}

// Format renders counts as "name=lines" pairs separated by spaces, for a
// log field; rule names never hold a space or an equals sign.
func Format(counts []Count) string {
	var b strings.Builder
	for i, c := range counts {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(c.Rule)
		b.WriteByte('=')
		b.WriteString(strconv.FormatInt(c.Lines, 10))
	}
	return b.String()
}

// checkTemplate refuses a placeholder that refers to a group the pattern
// does not have: Expand would silently insert nothing, and "$TOKEN" meant
// literally would leave "" in Loki instead of the marker the user expects.
// The syntax is Expand's: $$, $name and ${name}, where a name is a run of
// letters, digits and underscores (so $1x is the group "1x", not $1 then x).
func checkTemplate(re *regexp.Regexp, tmpl string) error {
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] != '$' {
			continue
		}
		if i+1 < len(tmpl) && tmpl[i+1] == '$' {
			i++
			continue
		}
		name, n := groupRef(tmpl[i+1:])
		if n == 0 {
			continue // not a reference: Expand keeps the $ as written
		}
		i += n
		if num, err := strconv.Atoi(name); err == nil {
			if num <= re.NumSubexp() {
				continue
			}
		} else if re.SubexpIndex(name) >= 0 {
			continue
		}
		return fmt.Errorf("refers to $%s, but the pattern has no group %q; write $$ for a literal $, and ${1}x for group 1 followed by x", name, name)
	}
	return nil
}

// groupRef reads the name after a $ the way regexp.Regexp.Expand does; n is
// how many bytes the reference takes, 0 when there is none.
func groupRef(s string) (name string, n int) {
	braced := strings.HasPrefix(s, "{")
	i := 0
	if braced {
		i = 1
	}
	start := i
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' {
			break
		}
		i += size
	}
	if i == start {
		return "", 0
	}
	if braced {
		if i >= len(s) || s[i] != '}' {
			return "", 0
		}
		return s[start:i], i + 1
	}
	return s[start:i], i
}
