package loki

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchEntries is a push's worth of text-format function lines as the
// listener queues them: in time order, one stream, about 170 bytes each,
// with the invocation's request and trace IDs for structured metadata.
func benchEntries(n int) []Entry {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	const requestID = "8f5e4c3a-1b2d-4e6f-9a7b-0c1d2e3f4a5b"
	const prefix = "2026-01-02T03:04:05.000Z\t" + requestID + "\tINFO\tline "
	entries := make([]Entry, n)
	for i := range entries {
		entries[i] = Entry{
			Time: base.Add(time.Duration(i) * time.Millisecond), Line: prefix + strconv.Itoa(i) + " " + strings.Repeat("x", 90),
			RequestID: requestID, TraceID: "5759e988bd862e3fe1be46a994272793",
		}
	}
	return entries
}

func benchClient(b *testing.B, url string) *Client {
	c, err := New(Config{URL: url, Labels: map[string]string{"source": "lambda", "function": "bench"}})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkEncode is grouping, sorting, protobuf and snappy for 1000 lines.
func BenchmarkEncode(b *testing.B) {
	entries := benchEntries(1000)
	c := benchClient(b, "http://127.0.0.1:1/api/prom/push")
	b.ReportAllocs()
	for b.Loop() {
		_ = c.encode(entries, metaAll)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(entries)), "ns/line")
}

// BenchmarkPush is Push of 1000 lines to a server answering 204: sanitising,
// encoding and one HTTP request (the server's own work included).
func BenchmarkPush(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	entries := benchEntries(1000)
	c := benchClient(b, srv.URL+"/api/prom/push")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := pushAll(c, ctx, entries); res.Delivered != len(entries) {
			b.Fatalf("delivered %d: %v", res.Delivered, res.Err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(entries)), "ns/line")
}
