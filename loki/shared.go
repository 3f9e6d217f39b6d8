package loki

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Pair is one structured metadata name and value.
type Pair struct{ Name, Value string }

// Bounds of shared metadata. A value is cut to MaxMetadataValueBytes (the
// context comes from the environment, which nothing else bounds) and pairs
// past MaxSharedMetadataBytes in all are left out, so that MinRequestBytes
// can count an entry's metadata without knowing it.
const (
	MaxMetadataValueBytes  = 256
	MaxSharedMetadataBytes = 1024
)

// Metadata is structured metadata that many entries share: the sandbox's
// context on every line, an invocation's on its lines, a REPORT's figures on
// its line. It is encoded once, when it is made, so that an entry pointing to
// it costs its push one copy of those bytes and no work per pair. A Metadata
// is immutable; With returns a new one.
type Metadata struct {
	pairs []Pair
	// encoded is the pairs as the Entry message's repeated
	// structuredMetadata fields.
	encoded string
}

// reservedNames are the metadata an Entry carries in its own fields.
var reservedNames = map[string]bool{nameLevel: true, nameRequestID: true, nameTraceID: true}

// NewMetadata returns the pairs as shared metadata, or nil when none is
// left: pairs with an empty value, an invalid or reserved name, or a name
// given before are left out, values are made valid UTF-8 and cut to
// MaxMetadataValueBytes, and pairs that would take the whole past
// MaxSharedMetadataBytes are left out.
func NewMetadata(pairs ...Pair) *Metadata {
	return (*Metadata)(nil).With(pairs...)
}

// With returns m's pairs followed by pairs, under NewMetadata's rules; m
// may be nil. It returns m itself when pairs add nothing.
func (m *Metadata) With(pairs ...Pair) *Metadata {
	out := &Metadata{}
	if m != nil {
		out.pairs = append(out.pairs, m.pairs...)
		out.encoded = m.encoded
	}
	b := []byte(out.encoded)
	added := false
	for _, p := range pairs {
		if p.Value == "" || reservedNames[p.Name] || ValidateLabelName(p.Name) != nil || out.Value(p.Name) != "" {
			continue
		}
		v := strings.ToValidUTF8(p.Value, "\uFFFD")
		if len(v) > MaxMetadataValueBytes {
			cut := MaxMetadataValueBytes
			for cut > 0 && !utf8.RuneStart(v[cut]) {
				cut--
			}
			v = v[:cut]
		}
		if len(b)+fieldSize(pairSize(p.Name, v)) > MaxSharedMetadataBytes {
			continue
		}
		b = appendPair(b, p.Name, v)
		out.pairs = append(out.pairs, Pair{p.Name, v})
		added = true
	}
	if !added {
		if m == nil || len(m.pairs) == 0 {
			return nil
		}
		return m
	}
	out.encoded = string(b)
	return out
}

// Pairs returns a copy of the pairs, in the order they are sent.
func (m *Metadata) Pairs() []Pair {
	if m == nil {
		return nil
	}
	return append([]Pair(nil), m.pairs...)
}

// Value returns the value of name, "" when m has none.
func (m *Metadata) Value(name string) string {
	if m == nil {
		return ""
	}
	for _, p := range m.pairs {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// Encoded is the metadata as pushed, for keeping entries on disk; "" for nil.
// ParseMetadata reads it back.
func (m *Metadata) Encoded() string {
	if m == nil {
		return ""
	}
	return m.encoded
}

// ParseMetadata reads what Encoded wrote; "" is nil. It fails on anything
// else, so a damaged file cannot put bytes into a push that Loki would
// refuse along with the lines around them.
func ParseMetadata(encoded string) (*Metadata, error) {
	if encoded == "" {
		return nil, nil
	}
	var pairs []Pair
	b := []byte(encoded)
	for len(b) > 0 {
		if b[0] != tagMetadata {
			return nil, errors.New("structured metadata: unexpected field")
		}
		pair, rest, err := lengthDelimited(b[1:])
		if err != nil {
			return nil, err
		}
		var p Pair
		for _, f := range []struct {
			tag byte
			dst *string
		}{{tagPairName, &p.Name}, {tagPairValue, &p.Value}} {
			if len(pair) == 0 || pair[0] != f.tag {
				return nil, errors.New("structured metadata: malformed pair")
			}
			var s []byte
			if s, pair, err = lengthDelimited(pair[1:]); err != nil {
				return nil, err
			}
			*f.dst = string(s)
		}
		if len(pair) != 0 {
			return nil, errors.New("structured metadata: malformed pair")
		}
		pairs = append(pairs, p)
		b = rest
	}
	m := NewMetadata(pairs...)
	if m.Encoded() != encoded {
		return nil, fmt.Errorf("structured metadata: %d pairs do not read back as written", len(pairs))
	}
	return m, nil
}

// lengthDelimited splits a length-prefixed field's bytes from what follows.
func lengthDelimited(b []byte) (field, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, nil, errors.New("structured metadata: truncated field")
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}
