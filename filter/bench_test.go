package filter

import (
	"strconv"
	"strings"
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/loglevel"
)

// threeMasks are the masks a cautious user would set: e-mail addresses (no
// literal prefix for the matcher to skip to), bearer tokens and card numbers.
var threeMasks = []Rule{
	{Type: MaskSequences, Name: "mask_emails", Pattern: emailPattern, Placeholder: "[EMAIL]"},
	{Type: MaskSequences, Name: "mask_bearer", Pattern: bearerPattern, Placeholder: "${1}[TOKEN]"},
	{Type: MaskSequences, Name: "mask_cards", Pattern: `\b(?:\d[ -]?){13,16}\b`, Placeholder: "[CARD]"},
}

// benchLines are text-format lines as the pipeline benchmark sends them:
// Node's prefix and a message padded to about 100 bytes.
func benchLines(n int, secret func(i int) string) []string {
	lines := make([]string, n)
	for i := range lines {
		msg := "line " + strconv.Itoa(i) + " of " + id + secret(i)
		if pad := 100 - len(msg) - 1; pad > 0 {
			msg += " " + strings.Repeat("x", pad)
		}
		level := "INFO"
		if i%4 == 0 {
			level = "DEBUG"
		}
		lines[i] = node(level, msg)
	}
	return lines
}

func noSecret(int) string { return "" }

// BenchmarkApply is the filter's cost per line: ns/op is per line.
func BenchmarkApply(b *testing.B) {
	tests := []struct {
		name  string
		cfg   Config
		lines []string
	}{
		{"no rules", Config{}, benchLines(1000, noSecret)},
		{"min level", Config{MinLevel: loglevel.Info}, benchLines(1000, noSecret)},
		{"three masks, nothing to mask", Config{Rules: threeMasks}, benchLines(1000, noSecret)},
		{"three masks, every line masked", Config{Rules: threeMasks}, benchLines(1000, func(i int) string {
			return " user" + strconv.Itoa(i) + "@example.com"
		})},
		{"min level, exclude, include and three masks", Config{MinLevel: loglevel.Info, Rules: append([]Rule{
			{Type: ExcludeAtMatch, Name: "drop_health", Pattern: `GET /health\b`},
			{Type: IncludeAtMatch, Name: "only_lines", Pattern: `line \d+`},
		}, threeMasks...)}, benchLines(1000, noSecret)},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			f, err := New(tt.cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				f.Apply(tt.lines[i%len(tt.lines)], loglevel.Unknown)
				i++
			}
		})
	}
}

// BenchmarkMaskLargeJSON is the worst case of a mask on a JSON record: a
// record near Loki's 256 KiB line limit, full of escapes, where every
// character matches and a quote in the placeholder forces masking value
// by value. Its cost grows with the line's length, not its square.
func BenchmarkMaskLargeJSON(b *testing.B) {
	for _, size := range []int{16 << 10, 256 << 10} {
		line := `{"message":"` + strings.Repeat(`a\n\u00e9`, size/9) + `","n":12345}`
		f, err := New(Config{Rules: []Rule{{Type: MaskSequences, Name: "m", Pattern: `.`, Placeholder: `"`}}})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				f.Apply(line, loglevel.Unknown)
			}
		})
	}
}
