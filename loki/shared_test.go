package loki

import (
	"slices"
	"strings"
	"testing"
)

func TestNewMetadataKeepsWhatLokiTakes(t *testing.T) {
	long := strings.Repeat("é", MaxMetadataValueBytes) // twice the bytes allowed
	tests := []struct {
		name  string
		pairs []Pair
		want  []Pair
	}{
		{"none", nil, nil},
		{"empty values say nothing", []Pair{{"runtime", ""}}, nil},
		{"in the order given", []Pair{{"log_stream", "s"}, {"architecture", "arm64"}}, []Pair{{"log_stream", "s"}, {"architecture", "arm64"}}},
		{"an entry's own fields are not repeated", []Pair{{"level", "x"}, {"request_id", "r"}, {"trace_id", "t"}, {"runtime", "go"}}, []Pair{{"runtime", "go"}}},
		{"invalid names are left out", []Pair{{"bad-name", "v"}, {"__reserved", "v"}, {"ok", "v"}}, []Pair{{"ok", "v"}}},
		{"the first of a name counts", []Pair{{"runtime", "a"}, {"runtime", "b"}}, []Pair{{"runtime", "a"}}},
		{"invalid UTF-8 is replaced", []Pair{{"runtime", "a\xffb"}}, []Pair{{"runtime", "a\uFFFDb"}}},
		{"long values are cut on a character", []Pair{{"runtime", long}}, []Pair{{"runtime", long[:MaxMetadataValueBytes]}}},
		{"pairs past the bound are left out", []Pair{{"a", long}, {"b", long}, {"c", long}, {"d", long}, {"e", "fits"}}, []Pair{{"a", long[:256]}, {"b", long[:256]}, {"c", long[:256]}, {"e", "fits"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMetadata(tt.pairs...)
			if got := m.Pairs(); !slices.Equal(got, tt.want) {
				t.Fatalf("pairs %q, want %q", got, tt.want)
			}
			if (m == nil) != (len(tt.want) == 0) {
				t.Fatalf("nil is %v for %d pairs", m == nil, len(tt.want))
			}
			if len(m.Encoded()) > MaxSharedMetadataBytes {
				t.Fatalf("%d bytes encoded", len(m.Encoded()))
			}
			back, err := ParseMetadata(m.Encoded())
			if err != nil || !slices.Equal(back.Pairs(), tt.want) {
				t.Fatalf("read back %q, %v", back.Pairs(), err)
			}
		})
	}
}

func TestMetadataWith(t *testing.T) {
	base := NewMetadata(Pair{"function_version", "3"})
	cold := base.With(Pair{"cold_start", "true"})
	if got := cold.Pairs(); !slices.Equal(got, []Pair{{"function_version", "3"}, {"cold_start", "true"}}) {
		t.Fatalf("with: %q", got)
	}
	if base.Value("cold_start") != "" || len(base.Pairs()) != 1 {
		t.Fatalf("With changed the metadata it extends: %q", base.Pairs())
	}
	if base.With(Pair{"function_version", "4"}, Pair{"x", ""}) != base {
		t.Fatal("With that adds nothing made a new metadata")
	}
	var none *Metadata
	if got := none.With(Pair{"a", "b"}); got.Value("a") != "b" {
		t.Fatalf("nil.With: %q", got.Pairs())
	}
}

func TestParseMetadataRefusesWhatItDidNotWrite(t *testing.T) {
	good := NewMetadata(Pair{"runtime", "python3.12"}).Encoded()
	for name, enc := range map[string]string{
		"cut short":            good[:len(good)-1],
		"another field":        "\x0a\x01x",
		"a pair without value": string(appendString([]byte{tagMetadata, 3}, tagPairName, "a")),
		"an invalid name":      string(appendPair(nil, "bad-name", "v")),
	} {
		if m, err := ParseMetadata(enc); err == nil {
			t.Errorf("%s: read %q", name, m.Pairs())
		}
	}
}
