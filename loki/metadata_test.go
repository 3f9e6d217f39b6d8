package loki

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/lambda-loki/grafana-loki-extension/internal/fakeloki"
)

// refusedAnswer is Loki 3.7.8's answer to a push with structured metadata
// when limits_config.allow_structured_metadata is false, for one stream
// with n such entries (TestRealLokiRefusingStructuredMetadata gets it from
// the real Loki).
func refusedAnswer(labels string, n int) string {
	msg := "stream '" + labels + "' includes structured metadata, but this feature is disallowed. Please see `limits_config.allow_structured_metadata` or contact your Loki administrator to enable it"
	if n > 1 {
		msg = fmt.Sprintf("%d errors like: %s", n, msg)
	}
	return msg
}

// withMetadata counts the entries of a push that carry structured metadata.
func withMetadata(req *push.PushRequest) (n int, first push.LabelsAdapter) {
	for _, s := range req.Streams {
		for _, e := range s.Entries {
			if len(e.StructuredMetadata) > 0 {
				if n == 0 {
					first = e.StructuredMetadata
				}
				n++
			}
		}
	}
	return n, first
}

// refusing answers like a Loki with allow_structured_metadata: false.
func refusing(_ int, req *push.PushRequest) (int, string) {
	if n, _ := withMetadata(req); n > 0 {
		return http.StatusBadRequest, refusedAnswer(req.Streams[0].Labels, n)
	}
	return http.StatusNoContent, ""
}

func TestStructuredMetadata(t *testing.T) {
	const rid, tid = "8f5e4c3a-1b2d-4e6f-9a7b-0c1d2e3f4a5b", "5759e988bd862e3fe1be46a994272793"
	entries := func() []Entry {
		return []Entry{
			{Time: t0, Line: "init, no metadata"},
			{Time: t0.Add(1), Line: `{"level":"ERROR"}`, Level: "ERROR", RequestID: rid, TraceID: tid},
			{Time: t0.Add(2), Line: "REPORT", Stream: StreamPlatform, RequestID: rid},
		}
	}
	all := push.LabelsAdapter{{Name: "level", Value: "ERROR"}, {Name: "request_id", Value: rid}, {Name: "trace_id", Value: tid}}
	type outcome struct {
		requests  int  // HTTP requests the push makes
		refused   bool // Result.MetadataRefused is set
		delivered int
		rejected  int
	}
	tests := []struct {
		name   string
		cfg    func(*Config)
		answer func(int, *push.PushRequest) (int, string)
		// pushes is what each of three pushes in a row does.
		pushes [3]outcome
		// sent is how many entries of each request carried metadata, and
		// first those of the first entry that had any (nil: none).
		sent  []int
		first push.LabelsAdapter
	}{
		{
			name:   "accepted: every field, sorted by name",
			pushes: [3]outcome{{1, false, 3, 0}, {1, false, 3, 0}, {1, false, 3, 0}},
			sent:   []int{2, 2, 2}, first: all,
		},
		{
			name: "a level label is not repeated as metadata", cfg: func(c *Config) { c.LevelLabel = true },
			pushes: [3]outcome{{1, false, 3, 0}, {1, false, 3, 0}, {1, false, 3, 0}},
			sent:   []int{2, 2, 2}, first: all[1:],
		},
		{
			name: "turned off: never sent", cfg: func(c *Config) { c.NoStructuredMetadata = true }, answer: refusing,
			pushes: [3]outcome{{1, false, 3, 0}, {1, false, 3, 0}, {1, false, 3, 0}},
			sent:   []int{0, 0, 0},
		},
		{
			name: "refused: pushed again without, reported once, remembered", answer: refusing,
			pushes: [3]outcome{{2, true, 3, 0}, {1, false, 3, 0}, {1, false, 3, 0}},
			sent:   []int{2, 0, 0, 0}, first: all,
		},
		{
			name: "refused again without metadata: rejected, no loop",
			answer: func(_ int, req *push.PushRequest) (int, string) {
				return http.StatusBadRequest, refusedAnswer(req.Streams[0].Labels, 3)
			},
			pushes: [3]outcome{{2, true, 0, 3}, {1, false, 0, 3}, {1, false, 0, 3}},
			sent:   []int{2, 0, 0, 0}, first: all,
		},
		{
			name: "another 400 (one entry's metadata too large) is a rejection of that entry, metadata kept",
			answer: func(_ int, req *push.PushRequest) (int, string) {
				return http.StatusBadRequest, "stream '" + req.Streams[0].Labels + "' has structured metadata too large: '70000' bytes, limit: '65536' bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it"
			},
			pushes: [3]outcome{{1, false, 2, 1}, {1, false, 2, 1}, {1, false, 2, 1}},
			sent:   []int{2, 2, 2}, first: all,
		},
		{
			name: "a 413 that mentions structured metadata is not a refusal",
			answer: func(int, *push.PushRequest) (int, string) {
				return http.StatusRequestEntityTooLarge, "structured metadata not allowed this large"
			},
			pushes: [3]outcome{{1, false, 0, 3}, {1, false, 0, 3}, {1, false, 0, 3}},
			sent:   []int{2, 2, 2}, first: all,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeloki.Loki{Answer: tt.answer}
			c, _ := newClient(t, f, tt.cfg)
			for i, want := range tt.pushes {
				res := pushAll(c, t.Context(), entries())
				got := outcome{res.Requests, res.MetadataRefused != nil, res.Delivered, res.Rejected}
				if got != want || len(res.Undelivered) != 0 {
					t.Fatalf("push %d: %+v, want %+v (%+v)", i, got, want, res)
				}
				if res.MetadataRefused != nil && !strings.Contains(res.MetadataRefused.Error(), "allow_structured_metadata") {
					t.Fatalf("push %d: MetadataRefused %v does not carry Loki's answer", i, res.MetadataRefused)
				}
			}
			var sent []int
			var first push.LabelsAdapter
			pushes := f.Pushes()
			for i := range pushes {
				n, sm := withMetadata(&pushes[i].Request)
				sent = append(sent, n)
				if first == nil {
					first = sm
				}
			}
			if fmt.Sprint(sent) != fmt.Sprint(tt.sent) || fmt.Sprint(first) != fmt.Sprint(tt.first) {
				t.Fatalf("entries with metadata per request %v, first %v; want %v, %v", sent, first, tt.sent, tt.first)
			}
		})
	}
}

// TestMetadataRefusedOnceAcrossRequests splits one push into several
// requests: the first is refused and sent again, the others go without
// metadata at once, and the refusal is reported once.
func TestMetadataRefusedOnceAcrossRequests(t *testing.T) {
	f := &fakeloki.Loki{Answer: refusing}
	c, _ := newClient(t, f, func(cfg *Config) { cfg.MaxRequestBytes = 64 * 1024 })
	entries := make([]Entry, 1000)
	for i := range entries {
		entries[i] = Entry{Time: t0.Add(time.Duration(i)), Line: strings.Repeat("x", 500), RequestID: "r"}
	}
	res := pushAll(c, t.Context(), entries)
	if res.Delivered != len(entries) || res.Rejected != 0 || res.MetadataRefused == nil || res.Requests != len(f.Pushes()) || res.Requests < 9 {
		t.Fatalf("%+v", res)
	}
	pushes := f.Pushes()
	for i := range pushes {
		if n, _ := withMetadata(&pushes[i].Request); (i == 0) != (n > 0) {
			t.Fatalf("request %d carried metadata on %d entries", i, n)
		}
	}
}

// TestRequestSizeBoundCountsMetadata: with long metadata values the split
// still keeps every request within MaxRequestBytes.
func TestRequestSizeBoundCountsMetadata(t *testing.T) {
	f := &fakeloki.Loki{}
	c, _ := newClient(t, f, func(cfg *Config) { cfg.MaxRequestBytes = 64 * 1024 })
	entries := make([]Entry, 500)
	for i := range entries {
		entries[i] = Entry{Time: t0.Add(time.Duration(i)), Line: "x", RequestID: strings.Repeat("r", 300), TraceID: strings.Repeat("t", 300), Level: strings.Repeat("l", 60)}
	}
	if res := pushAll(c, t.Context(), entries); res.Delivered != len(entries) || res.Requests < 2 {
		t.Fatalf("%+v", res)
	}
	pushes := f.Pushes()
	for i := range pushes {
		if size := pushes[i].Request.Size(); size > 64*1024 {
			t.Fatalf("request %d is %d bytes", i, size)
		}
	}
}
