package filter

import (
	"regexp/syntax"
	"strings"
	"unicode"
	"unicode/utf8"
)

// prefilter rules lines out before the regular expression runs. Go's
// matcher is linear but not fast: a pattern without a literal prefix (an
// e-mail address, a card number) costs about 20 ns per byte of the line,
// some 3 µs for an ordinary line, on every line, although almost no line
// holds what it looks for. Two facts read from the pattern are checked in
// a few nanoseconds instead, and a line that fails either cannot match:
//
//   - literals: strings every match contains ("@" for an e-mail address);
//   - a run: every match is at least minRun consecutive bytes all of the
//     set class (a 13-to-16-digit card number needs 13 bytes of digits,
//     spaces and dashes in a row, which a timestamp or a UUID never has).
//
// Both are derived conservatively: when in doubt, the check is left out and
// the regular expression decides alone.
type prefilter struct {
	literals []string
	class    *[256]bool
	minRun   int
}

// minUsefulRun is the shortest run worth checking for: shorter runs are in
// every line.
const minUsefulRun = 4

func newPrefilter(pattern string) prefilter {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return prefilter{}
	}
	re = re.Simplify()
	p := prefilter{literals: requiredLiterals(re)}
	var class [256]bool
	if n, ok := runOf(re, &class); ok && n >= minUsefulRun {
		p.class, p.minRun = &class, n
	}
	return p
}

// mayMatch is false only when the pattern cannot match line.
func (p *prefilter) mayMatch(line string) bool {
	for _, lit := range p.literals {
		if !strings.Contains(line, lit) {
			return false
		}
	}
	if p.class == nil {
		return true
	}
	run := 0
	for i := 0; i < len(line); i++ {
		if !p.class[line[i]] {
			run = 0
			continue
		}
		if run++; run >= p.minRun {
			return true
		}
	}
	return false
}

// requiredLiterals returns case-sensitive strings that every match of re
// contains.
func requiredLiterals(re *syntax.Regexp) []string {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase == 0 {
			return []string{string(re.Rune)}
		}
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiterals(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiterals(re.Sub[0])
		}
	case syntax.OpConcat:
		var lits []string
		var run strings.Builder
		flush := func() {
			if run.Len() > 0 {
				lits = append(lits, run.String())
				run.Reset()
			}
		}
		for _, sub := range re.Sub {
			if sub.Op == syntax.OpLiteral && sub.Flags&syntax.FoldCase == 0 {
				run.WriteString(string(sub.Rune))
				continue
			}
			if width0(sub) {
				continue // an assertion between two literals does not part them
			}
			flush()
			lits = append(lits, requiredLiterals(sub)...)
		}
		flush()
		return lits
	}
	return nil
}

// width0 reports whether re matches only the empty string (an assertion).
func width0(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return true
	}
	return false
}

// runOf adds to class every byte a match of re can contain and returns the
// fewest characters a match has; ok is false when a match can contain any
// byte (., or a class that broad is no use either).
func runOf(re *syntax.Regexp, class *[256]bool) (minLen int, ok bool) {
	switch {
	case width0(re):
		return 0, true
	}
	switch re.Op {
	case syntax.OpLiteral:
		for _, r := range re.Rune {
			addRune(class, r)
			if re.Flags&syntax.FoldCase != 0 {
				for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
					addRune(class, f)
				}
			}
		}
		return len(re.Rune), true
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			lo, hi := re.Rune[i], re.Rune[i+1]
			for r := lo; r <= min(hi, utf8.RuneSelf-1); r++ {
				class[r] = true
			}
			if hi >= utf8.RuneSelf {
				addRune(class, utf8.RuneSelf)
			}
		}
		return 1, true
	case syntax.OpCapture:
		return runOf(re.Sub[0], class)
	case syntax.OpStar, syntax.OpQuest:
		_, ok := runOf(re.Sub[0], class)
		return 0, ok
	case syntax.OpPlus:
		return runOf(re.Sub[0], class)
	case syntax.OpRepeat:
		n, ok := runOf(re.Sub[0], class)
		return n * re.Min, ok
	case syntax.OpConcat:
		total := 0
		for _, sub := range re.Sub {
			n, ok := runOf(sub, class)
			if !ok {
				return 0, false
			}
			total += n
		}
		return total, true
	case syntax.OpAlternate:
		least := -1
		for _, sub := range re.Sub {
			n, ok := runOf(sub, class)
			if !ok {
				return 0, false
			}
			if least < 0 || n < least {
				least = n
			}
		}
		return max(least, 0), true
	}
	return 0, false
}

// addRune marks the bytes of r's UTF-8 form; every byte of a multi-byte
// character is at least 0x80, so all of those are marked at once.
func addRune(class *[256]bool, r rune) {
	if r < utf8.RuneSelf {
		class[r] = true
		return
	}
	for b := utf8.RuneSelf; b < 256; b++ {
		class[b] = true
	}
}
