package loki

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/afiskon/promtail-client/logproto"
	"github.com/golang/protobuf/proto"
	"github.com/golang/protobuf/ptypes/timestamp"
	"github.com/golang/snappy"
)

// referenceBody is the push body the protobuf library makes for entries
// with the promtail-client types: what the hand-written encoder must match
// byte for byte.
func referenceBody(t *testing.T, entries []Entry, labelsFor func(*Entry) string) []byte {
	t.Helper()
	req := &logproto.PushRequest{}
	streams := map[string]*logproto.Stream{}
	type item struct {
		e   Entry
		pos int
	}
	byStream := map[string][]item{}
	for i := range entries {
		labels := labelsFor(&entries[i])
		if streams[labels] == nil {
			streams[labels] = &logproto.Stream{Labels: labels}
			req.Streams = append(req.Streams, streams[labels])
		}
		byStream[labels] = append(byStream[labels], item{entries[i], i})
	}
	for labels, items := range byStream {
		slices.SortStableFunc(items, func(a, b item) int { return a.e.Time.Compare(b.e.Time) })
		for _, it := range items {
			streams[labels].Entries = append(streams[labels].Entries, &logproto.Entry{
				Timestamp: &timestamp.Timestamp{Seconds: it.e.Time.Unix(), Nanos: int32(it.e.Time.Nanosecond())},
				Line:      it.e.Line,
			})
		}
	}
	raw, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestEncoderMatchesTheProtobufLibrary(t *testing.T) {
	c, err := New(Config{URL: "http://loki:3100/api/prom/push", Labels: map[string]string{"source": "lambda", "function": "fn", "env": "a \"quoted\" value"}, LevelLabel: true})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 4, 5, 6, 7, 891_000_000, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]Entry, 3000)
	for i := range random {
		random[i] = Entry{
			Time:   base.Add(time.Duration(rng.IntN(5000)-2500) * time.Millisecond),
			Line:   strings.Repeat("é", rng.IntN(300)),
			Stream: StreamType(rng.IntN(3)),
			Level:  []string{"", "INFO", "ERROR"}[rng.IntN(3)],
		}
	}
	tests := []struct {
		name    string
		entries []Entry
	}{
		{"one line", []Entry{{Time: base, Line: "hello"}}},
		{"in order, one stream", []Entry{{Time: base, Line: "a"}, {Time: base.Add(time.Millisecond), Line: "b"}}},
		{"out of order, equal times keep their order", []Entry{{Time: base.Add(time.Second), Line: "late"}, {Time: base, Line: "x"}, {Time: base, Line: "y"}}},
		{"empty line, whole second, the epoch, before the epoch", []Entry{
			{Time: base, Line: ""}, {Time: base.Truncate(time.Second), Line: "whole"},
			{Time: time.Unix(0, 0), Line: "epoch"}, {Time: time.Unix(-5, 7), Line: "before"},
		}},
		{"a long line (multi-byte lengths)", []Entry{{Time: base, Line: strings.Repeat("l", 200_000)}}},
		{"random streams, levels and times", random},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := referenceBody(t, tt.entries, c.labelsFor)
			for range 2 { // the second time reuses the encoder's buffers
				body := c.enc.encode(tt.entries, c.labelsFor)
				got, err := snappy.Decode(nil, body)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("encoded %d bytes differ from the protobuf library's %d", len(got), len(want))
				}
			}
		})
	}
}
