package filter

import (
	"encoding/json"
	"sort"
	"strings"
)

// mask replaces every non-empty match of the rule's pattern with its
// placeholder, as regexp.Regexp.ReplaceAllString would (and as Datadog's
// agent does); ok is false when nothing was replaced. An empty match is
// left alone: a pattern such as x* matches nothing at every position, and
// a placeholder there would be noise.
//
// A JSON object (a JSON-format record, or a text line a logger wrote as
// JSON) must stay valid JSON, or LogQL's | json can no longer read it. When
// plain replacement would break it (a placeholder with a quote, \S+ running
// past the end of a string, a card-number pattern hitting a 13-digit epoch
// timestamp), the line is masked value by value instead: every character
// the pattern matched inside a string or a bare value is still masked, but
// the quotes, colons, commas and braces between them are kept, a string's
// placeholder is escaped as string content, and a number (or true, false,
// null) the pattern touched is replaced whole by the placeholder as a
// string. A pattern written around a key, such as ("password":")[^"]*
// with the placeholder ${1}***, keeps JSON valid and is replaced as written.
func (r *rule) mask(line string) (string, bool) {
	matches := r.re.FindAllStringSubmatchIndex(line, -1)
	out, ok := r.replace(line, matches, false)
	if ok && len(line) >= 2 && line[0] == '{' && line[len(line)-1] == '}' && !json.Valid([]byte(out)) && json.Valid([]byte(line)) {
		// Matches of nothing but punctuation mask nothing here.
		out, ok = r.replace(line, matches, true)
	}
	return out, ok
}

// replace builds the masked line. Each match is replaced as a whole, or
// with byValue only its parts inside the JSON text's values, each by the
// placeholder made fit for where it stands.
func (r *rule) replace(line string, matches [][]int, byValue bool) (string, bool) {
	var spans []span
	if byValue {
		spans = valueSpans(line)
	}
	var out []byte
	last := 0 // line[:last] is already in out, copied or replaced
	changed := false
	for _, m := range matches {
		if m[0] == m[1] || m[1] <= last {
			continue
		}
		if !byValue {
			out = append(out, line[last:m[0]]...)
			out = r.expand(out, r.template, line, m)
			last, changed = m[1], true
			continue
		}
		i := sort.Search(len(spans), func(i int) bool { return spans[i].end > m[0] })
		for ; i < len(spans) && spans[i].start < m[1]; i++ {
			sp := &spans[i]
			start, end, tmpl := max(m[0], sp.start), min(m[1], sp.end), r.jsonTemplate
			if sp.bare {
				start, end, tmpl = sp.start, sp.end, r.jsonValueTemplate
				start = max(start, last)
			} else {
				// Escape sequences are found by reading the string from a
				// known boundary: last, when it lies in this string (it ends
				// an earlier replacement), so that each string is read once
				// however many matches it holds.
				from := max(sp.start, last)
				start = max(sp.alignDown(line, min(from, start), start), from)
				end = sp.alignUp(line, start, max(start, end))
			}
			if start >= end {
				continue
			}
			out = append(out, line[last:start]...)
			groups := m
			if r.groups {
				groups = clipGroups(line, sp, m, start, end)
			}
			out = r.expand(out, tmpl, line, groups)
			last, changed = end, true
		}
	}
	if !changed {
		return line, false
	}
	out = append(out, line[last:]...)
	return string(out), true
}

// span is a value of a JSON text: the content of a string literal, between
// its quotes (end is the closing quote's index), or a bare number, true,
// false or null.
type span struct {
	start, end int
	bare       bool
}

// valueSpans finds the strings and bare values of a JSON text, in order.
// The text need not be valid JSON: a string left open runs to the end.
// Keys are strings too, and are treated alike.
func valueSpans(line string) []span {
	var spans []span
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '"':
			j := i + 1
			for j < len(line) && line[j] != '"' {
				if line[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j, len(line))
			spans = append(spans, span{start: i + 1, end: j})
			i = j
		case bareChar(c):
			j := i + 1
			for j < len(line) && bareChar(line[j]) {
				j++
			}
			spans = append(spans, span{start: i, end: j, bare: true})
			i = j - 1
		}
	}
	return spans
}

// bareChar reports whether c can be part of a JSON number, true, false or null.
func bareChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '+' || c == '.'
}

// escapeLen is the length of the character or escape sequence at i.
func (s span) escapeLen(line string, i int) int {
	if line[i] != '\\' {
		return 1
	}
	if i+1 < s.end && line[i+1] == 'u' {
		return min(6, s.end-i)
	}
	return min(2, s.end-i)
}

// alignDown moves p back to the start of the escape sequence it splits,
// reading from the boundary from (at most p).
func (s span) alignDown(line string, from, p int) int {
	i, prev := from, from
	for i < p {
		prev = i
		i += s.escapeLen(line, i)
	}
	if i == p {
		return p
	}
	return prev
}

// alignUp moves p on to the end of the escape sequence it splits, reading
// from the boundary from (at most p).
func (s span) alignUp(line string, from, p int) int {
	i := from
	for i < p {
		i += s.escapeLen(line, i)
	}
	return min(i, s.end)
}

// expand appends the placeholder for match m; one without a group
// reference is copied as it is, without Expand's parsing.
func (r *rule) expand(dst []byte, tmpl, line string, m []int) []byte {
	if !r.groups {
		return append(dst, tmpl...)
	}
	return r.re.ExpandString(dst, tmpl, line, m)
}

// clipGroups returns a copy of the match m whose whole match is
// [start, end) within the span sp, and whose groups are cut to it and, in a
// string, widened so as not to split an escape sequence.
func clipGroups(line string, sp *span, m []int, start, end int) []int {
	c := append([]int(nil), m...)
	c[0], c[1] = start, end
	for k := 2; k+1 < len(c); k += 2 {
		if c[k] < 0 {
			continue
		}
		g0, g1 := min(max(c[k], start), end), min(max(c[k+1], start), end)
		if !sp.bare {
			g0 = sp.alignDown(line, start, g0)
			g1 = sp.alignUp(line, g0, max(g0, g1))
		}
		c[k], c[k+1] = g0, max(g0, g1)
	}
	return c
}

// escapeJSON escapes s for the inside of a JSON string. Expand's $
// references are left intact: escaping touches only quotes, backslashes
// and control characters.
func escapeJSON(s string) string {
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\r':
			b.WriteString(`\r`)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
