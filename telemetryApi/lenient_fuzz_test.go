package telemetryApi

import (
	"bytes"
	"encoding/json"
	"testing"
)

// Wherever encoding/json reads an array, splitArray cuts it into the same
// elements.
func FuzzSplitArray(f *testing.F) {
	for _, s := range []string{`[]`, ` [ 1 , "a]\"," , {"b":[1,{}]}, null ] `, `[{"time":"x","type":"function","record":"]"}]`, `["\\"]`, `[1,]`, `[`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var want []json.RawMessage
		if json.Unmarshal(body, &want) != nil {
			_, _ = splitArray(body) // must not panic
			return
		}
		got, err := splitArray(body)
		if err != nil || len(got) != len(want) {
			t.Fatalf("%q: %d elements, %v; encoding/json reads %d", body, len(got), err, len(want))
		}
		for i := range got {
			if !bytes.Equal(bytes.TrimSpace(got[i]), bytes.TrimSpace(want[i])) {
				t.Fatalf("%q: element %d is %q, want %q", body, i, got[i], want[i])
			}
		}
	})
}
