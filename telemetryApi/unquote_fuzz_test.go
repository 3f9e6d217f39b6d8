package telemetryApi

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzUnquoteJSONString checks the hand-written decoder against
// encoding/json on every literal encoding/json accepts: the same text, or
// the records of a batch would not ship as the function wrote them.
func FuzzUnquoteJSONString(f *testing.F) {
	for _, s := range []string{`"a"`, `"a\nb\t"`, `"\ud83d\ude00"`, `"\ud83d"`, `"\ud83dx"`, "\"bad \xff\xfe\"", `"\u00e9\/\\\""`, `"\ud83d\u0041"`, `"\udc00\ud800"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, lit []byte) {
		var want string
		if json.Unmarshal(lit, &want) != nil || len(lit) == 0 || bytes.TrimSpace(lit)[0] != '"' {
			return
		}
		got, ok := unquoteJSONString(bytes.TrimSpace(lit))
		if !ok || got != want {
			t.Fatalf("%q: got %q %v, want %q", lit, got, ok, want)
		}
	})
}
