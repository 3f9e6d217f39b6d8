package loki

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
)

// referenceBody is the push body Loki's own push package marshals for
// entries: what the hand-written encoder must match byte for byte. It
// builds each entry's structured metadata from the non-empty fields meta
// selects (a level only up to MaxLevelBytes), sorted by name as Loki keeps
// label sets, then the entry's shared metadata in its own order.
func referenceBody(t *testing.T, entries []Entry, labelsFor func(*Entry) string, meta metaFields) []byte {
	t.Helper()
	var req push.PushRequest
	index := map[string]int{}
	for i := range entries {
		e := &entries[i]
		labels := labelsFor(e)
		si, ok := index[labels]
		if !ok {
			si = len(req.Streams)
			index[labels] = si
			req.Streams = append(req.Streams, push.Stream{Labels: labels})
		}
		var sm push.LabelsAdapter
		level := e.Level
		if len(level) > MaxLevelBytes {
			level = ""
		}
		for _, f := range []struct {
			bit         metaFields
			name, value string
		}{
			{metaRequestID, "request_id", e.RequestID},
			{metaTraceID, "trace_id", e.TraceID},
			{metaLevel, "level", level},
		} {
			if meta&f.bit != 0 && f.value != "" {
				sm = append(sm, push.LabelAdapter{Name: f.name, Value: f.value})
			}
		}
		slices.SortFunc(sm, func(a, b push.LabelAdapter) int { return strings.Compare(a.Name, b.Name) })
		if meta&metaShared != 0 {
			for _, p := range e.Meta.Pairs() {
				sm = append(sm, push.LabelAdapter{Name: p.Name, Value: p.Value})
			}
		}
		req.Streams[si].Entries = append(req.Streams[si].Entries, push.Entry{Timestamp: e.Time, Line: e.Line, StructuredMetadata: sm})
	}
	for _, s := range req.Streams {
		slices.SortStableFunc(s.Entries, func(a, b push.Entry) int { return a.Timestamp.Compare(b.Timestamp) })
	}
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// randomEntries are n entries over every stream, with times out of order
// and structured metadata values that are sometimes empty, multi-byte or
// long enough for a two-byte length.
func randomEntries(rng *rand.Rand, base time.Time, n int) []Entry {
	pick := func(values ...string) string { return values[rng.IntN(len(values))] }
	shared := []*Metadata{nil, sandboxMeta, sandboxMeta.With(Pair{"cold_start", "true"}), NewMetadata(Pair{"runtime", strings.Repeat("é", 200)})}
	entries := make([]Entry, n)
	for i := range entries {
		entries[i] = Entry{
			Time:      base.Add(time.Duration(rng.IntN(5000)-2500) * time.Millisecond),
			Line:      strings.Repeat("é", rng.IntN(300)),
			Stream:    StreamType(rng.IntN(3)),
			Level:     pick("", "INFO", "ERROR", "niveau-é", strings.Repeat("L", MaxLevelBytes), strings.Repeat("L", MaxLevelBytes+1)),
			RequestID: pick("", "8f5e4c3a-1b2d-4e6f-9a7b-0c1d2e3f4a5b", "req-"+strconv.Itoa(rng.IntN(1000))),
			TraceID:   pick("", "5759e988bd862e3fe1be46a994272793", strings.Repeat("t", 130)),
			Meta:      shared[rng.IntN(len(shared))],
		}
	}
	return entries
}

func TestEncoderMatchesLokisPushPackage(t *testing.T) {
	c, err := New(Config{URL: "http://loki:3100/api/prom/push", Labels: map[string]string{"source": "lambda", "function": "fn", "env": "a \"quoted\" value"}, LevelLabel: true})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 4, 5, 6, 7, 891_000_000, time.UTC)
	const rid, tid = "8f5e4c3a-1b2d-4e6f-9a7b-0c1d2e3f4a5b", "5759e988bd862e3fe1be46a994272793"
	entries := []struct {
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
		{"a long line (multi-byte lengths)", []Entry{{Time: base, Line: strings.Repeat("l", 200_000), RequestID: rid}}},
		{"every metadata field", []Entry{{Time: base, Line: `{"level":"ERROR"}`, Level: "ERROR", RequestID: rid, TraceID: tid}}},
		{"metadata on an empty line", []Entry{{Time: base, RequestID: rid, TraceID: tid}}},
		{"shared metadata", []Entry{{Time: base, Line: "a", RequestID: rid, Meta: sandboxMeta}, {Time: base, Line: "b", Meta: sandboxMeta}}},
		{"a level too long to be one stays in the line only", []Entry{{Time: base, Line: "x", Level: strings.Repeat("L", 100_000), RequestID: rid}}},
		{"some with, some without", []Entry{
			{Time: base, Line: "init"}, {Time: base, Line: "a", RequestID: rid},
			{Time: base, Line: "b", RequestID: rid, TraceID: tid}, {Time: base, Line: "REPORT", Stream: StreamPlatform, RequestID: rid},
		}},
		{"random streams, levels, IDs and times", randomEntries(rand.New(rand.NewPCG(1, 2)), base, 3000)},
	}
	modes := []struct {
		name string
		meta metaFields
	}{
		{"with metadata", metaAll},
		{"without metadata", 0},
		{"without level", metaAll &^ metaLevel},
	}
	for _, tt := range entries {
		for _, m := range modes {
			t.Run(tt.name+"/"+m.name, func(t *testing.T) {
				want := referenceBody(t, tt.entries, c.labelsFor, m.meta)
				for range 2 { // the second time reuses the encoder's buffers
					got, err := snappy.Decode(nil, c.encode(tt.entries, m.meta))
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, want) {
						t.Fatalf("encoded %d bytes differ from the push package's %d", len(got), len(want))
					}
				}
			})
		}
	}
}

// TestEncoderRoundTripsThroughLokisPushPackage decodes what the encoder
// wrote with Loki's own unmarshalling, so a field written under the wrong
// number fails here even if the reference were built the same wrong way.
func TestEncoderRoundTripsThroughLokisPushPackage(t *testing.T) {
	c, err := New(Config{URL: "http://loki:3100/api/prom/push", Labels: map[string]string{"source": "lambda", "function": "fn"}})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)
	in := []Entry{{Time: at, Line: "l", Level: "WARN", RequestID: "r-1", TraceID: "5759e988bd862e3fe1be46a994272793", Meta: NewMetadata(Pair{"log_stream", "2026/03/04/[$LATEST]abc"}, Pair{"cold_start", "true"})}}
	raw, err := snappy.Decode(nil, c.encode(in, c.metadata()))
	if err != nil {
		t.Fatal(err)
	}
	var req push.PushRequest
	if err := req.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	if len(req.Streams) != 1 || len(req.Streams[0].Entries) != 1 {
		t.Fatalf("decoded %+v", req.Streams)
	}
	got := req.Streams[0].Entries[0]
	want := push.LabelsAdapter{{Name: "level", Value: "WARN"}, {Name: "request_id", Value: "r-1"}, {Name: "trace_id", Value: "5759e988bd862e3fe1be46a994272793"},
		{Name: "log_stream", Value: "2026/03/04/[$LATEST]abc"}, {Name: "cold_start", Value: "true"}}
	if !got.Timestamp.Equal(at) || got.Line != "l" || !slices.Equal(got.StructuredMetadata, want) || len(got.Parsed) != 0 {
		t.Fatalf("decoded %+v, want %v", got, want)
	}
}

// TestEntrySizeCountsMetadata keeps a request's size bound true with
// structured metadata: Size must be at least what the entry adds to the
// encoded body.
func TestEntrySizeCountsMetadata(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)
	tests := []struct {
		name string
		e    Entry
	}{
		{"line only", Entry{Time: at, Line: "x"}},
		{"all metadata", Entry{Time: at, Line: "x", Level: "ERROR", RequestID: "8f5e4c3a-1b2d-4e6f-9a7b-0c1d2e3f4a5b", TraceID: "5759e988bd862e3fe1be46a994272793"}},
		{"long values", Entry{Time: at, Line: strings.Repeat("x", 300), Level: strings.Repeat("l", MaxLevelBytes), RequestID: strings.Repeat("r", 300), TraceID: strings.Repeat("t", 300)}},
		{"a level too long to be sent", Entry{Time: at, Line: "x", Level: strings.Repeat("l", 300)}},
		{"shared metadata", Entry{Time: at, Line: "x", RequestID: "r", Meta: sandboxMeta}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if encoded := fieldSize(entrySize(&tt.e, metaAll)); tt.e.Size() < encoded {
				t.Fatalf("Size %d < %d encoded bytes", tt.e.Size(), encoded)
			}
			bare := tt.e
			bare.Level, bare.RequestID, bare.TraceID, bare.Meta = "", "", "", nil
			if got, want := tt.e.Size()-bare.Size(), metadataSize(&tt.e, metaAll); got != want {
				t.Fatalf("metadata counts %d bytes in Size, want %d", got, want)
			}
		})
	}
}

// sandboxMeta is shared metadata as the listener makes it for a sandbox.
var sandboxMeta = NewMetadata(Pair{"log_stream", "2026/03/04/[$LATEST]8f5e4c3a1b2d4e6f9a7b0c1d2e3f4a5b"},
	Pair{"function_version", "$LATEST"}, Pair{"runtime", "python3.12"}, Pair{"architecture", "x86_64"})
