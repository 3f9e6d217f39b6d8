package loki_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/lokibin"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// startLoki runs a real Loki with extra limits_config lines, or skips the
// test when the binary is missing (fails under CI).
func startLoki(t *testing.T, limits string) *lokiserver.Server {
	t.Helper()
	bin, err := lokibin.Find()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	srv, err := lokiserver.Start(t.Context(), lokiserver.Options{Binary: bin, Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

// metadataEntries are n lines of one invocation over two streams, with an
// init line (no metadata at all) first.
func metadataEntries(base time.Time, n int, requestID string) []loki.Entry {
	entries := []loki.Entry{{Time: base, Line: "init line before " + requestID}}
	for i := range n {
		e := loki.Entry{Time: base.Add(time.Duration(i+1) * time.Millisecond), Line: fmt.Sprintf("%s line %d", requestID, i),
			RequestID: requestID, TraceID: "5759e988bd862e3fe1be46a994272793"}
		if i%3 == 0 {
			e.Line, e.Level = fmt.Sprintf(`{"level":"ERROR","message":"%s line %d"}`, requestID, i), "ERROR"
		}
		if i%5 == 0 {
			e.Stream = loki.StreamPlatform
		}
		entries = append(entries, e)
	}
	return entries
}

// TestRealLokiRefusingStructuredMetadata runs Loki 3.7.8 with
// allow_structured_metadata: false: every line is stored once, the refusal
// is reported once, and no request is repeated beyond the one fallback.
func TestRealLokiRefusingStructuredMetadata(t *testing.T) {
	srv := startLoki(t, "\n  allow_structured_metadata: false")
	c, err := loki.New(loki.Config{URL: srv.PushURL(), Labels: map[string]string{"source": "lambda", "function": "refusing"}})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	var want []string
	refusals := 0
	for i, rid := range []string{"req-a", "req-b", "req-c"} {
		entries := metadataEntries(base.Add(time.Duration(i)*time.Second), 20, rid)
		for _, e := range entries {
			want = append(want, e.Line)
		}
		res := c.PushRetrying(t.Context(), entries, time.Time{})
		if res.MetadataRefused != nil {
			refusals++
			t.Logf("Loki's answer: %v", res.MetadataRefused)
			if !strings.Contains(res.MetadataRefused.Error(), "includes structured metadata, but this feature is disallowed") {
				t.Fatalf("refusal %v", res.MetadataRefused)
			}
		}
		wantRequests := 1
		if i == 0 {
			wantRequests = 2
		}
		if res.Err != nil || res.Delivered != len(entries) || res.Rejected != 0 || res.Requests != wantRequests || res.Retries != wantRequests-1 {
			t.Fatalf("push %d: %+v", i, res)
		}
	}
	if refusals != 1 {
		t.Fatalf("%d refusals reported, want 1", refusals)
	}
	lines, err := srv.Query(t.Context(), lokiserver.Query{LogQL: `{function="refusing"}`, Start: base.Add(-time.Second), End: base.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, l := range lines {
		seen[l.Line]++
		if _, ok := l.Labels["request_id"]; ok {
			t.Fatalf("a refusing Loki stored metadata: %v", l.Labels)
		}
	}
	for _, w := range want {
		if seen[w] != 1 {
			t.Fatalf("line %q stored %d times; %d lines stored, %d pushed", w, seen[w], len(lines), len(want))
		}
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines stored, %d pushed", len(lines), len(want))
	}
}

// TestRealLokiFiltersOnStructuredMetadata: with Loki's default limits the
// metadata is stored, and LogQL finds one request and one trace without a
// line filter, while the stream labels stay as they were.
func TestRealLokiFiltersOnStructuredMetadata(t *testing.T) {
	srv := startLoki(t, "")
	c, err := loki.New(loki.Config{URL: srv.PushURL(), Labels: map[string]string{"source": "lambda", "function": "meta"}})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	a, b := metadataEntries(base, 10, "req-a"), metadataEntries(base.Add(time.Second), 7, "req-b")
	for i := range b {
		if b[i].RequestID != "" {
			b[i].TraceID = "0c0fec141ab77a00bc047aa25f35ae12"
		}
	}
	for _, entries := range [][]loki.Entry{a, b} {
		if res := c.PushRetrying(t.Context(), entries, time.Time{}); res.Err != nil || res.MetadataRefused != nil || res.Requests != 1 {
			t.Fatalf("%+v", res)
		}
	}
	streams, err := srv.Query(t.Context(), lokiserver.Query{LogQL: `{function="meta"}`, Start: base.Add(-time.Second), End: base.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if len(streams) != len(a)+len(b) {
		t.Fatalf("%d lines stored, want %d", len(streams), len(a)+len(b))
	}
	tests := []struct {
		logql string
		want  int
	}{
		{`{function="meta"} | request_id="req-a"`, len(a) - 1},
		{`{function="meta"} | request_id="req-b"`, len(b) - 1},
		{`{function="meta"} | trace_id="0c0fec141ab77a00bc047aa25f35ae12"`, len(b) - 1},
		{`{function="meta", type="platform"} | request_id="req-a"`, 2},
		{`{function="meta"} | level="ERROR" | request_id="req-a"`, 4},
		{`{function="meta"} | request_id=""`, 2},
	}
	for _, tt := range tests {
		lines, err := srv.Query(t.Context(), lokiserver.Query{LogQL: tt.logql, Start: base.Add(-time.Second), End: base.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if len(lines) != tt.want {
			t.Errorf("%s: %d lines, want %d", tt.logql, len(lines), tt.want)
		}
	}
	// Nothing new is indexed: no metadata name is a label name.
	var names struct {
		Data []string `json:"data"`
	}
	path := fmt.Sprintf("/loki/api/v1/labels?start=%d&end=%d", base.Add(-time.Second).UnixNano(), base.Add(time.Minute).UnixNano())
	if err := srv.Get(t.Context(), path, "", &names); err != nil {
		t.Fatal(err)
	}
	if len(names.Data) == 0 {
		t.Fatal("no label names")
	}
	for _, name := range names.Data {
		if name == "request_id" || name == "trace_id" || name == "level" {
			t.Fatalf("label names %v include %s", names.Data, name)
		}
	}
}
