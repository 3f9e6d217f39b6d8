// Package fakeloki is the one fake Loki of the unit tests: an HTTP handler
// that decodes pushes (snappy + protobuf) with Loki's own push types, keeps
// them, and answers as the test says. End-to-end tests use a real Loki
// (internal/lokiserver) instead.
package fakeloki

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
)

// Received is one push as the fake Loki decoded it.
type Received struct {
	Header  http.Header
	Request push.PushRequest
	// Size is the decompressed protobuf's size in bytes.
	Size int
}

// Loki answers pushes. Its zero value stores every push and answers 204,
// as Loki does on success.
type Loki struct {
	// Respond, when set, may answer the n-th request (0-based) before it
	// is decoded, as a failing Loki would (a status, a hang); it returns
	// true when it answered.
	Respond func(n int, w http.ResponseWriter) bool
	// Answer, when set, picks the status and message for the n-th decoded
	// push (0-based among the pushes kept).
	Answer func(n int, req *push.PushRequest) (status int, msg string)
	// Discard keeps nothing and decodes nothing: the body is read and 204
	// answered, so that a benchmark measures its client, not this server.
	Discard bool

	requests atomic.Int64
	mu       sync.Mutex
	pushes   []Received
}

// Start serves l on a new loopback server, closed when the test ends.
func Start(tb testing.TB, l *Loki) *httptest.Server {
	srv := httptest.NewServer(l)
	tb.Cleanup(srv.Close)
	return srv
}

// ServeHTTP decodes and keeps a push, and answers it.
func (l *Loki) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := int(l.requests.Add(1) - 1)
	if l.Respond != nil && l.Respond(n, w) {
		return
	}
	if l.Discard {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	body, _ := io.ReadAll(r.Body)
	req, size, err := Decode(body)
	if err != nil || len(req.Streams) == 0 {
		// Loki answers an empty or undecodable push so.
		http.Error(w, "bad or empty push", http.StatusUnprocessableEntity)
		return
	}
	l.mu.Lock()
	kept := len(l.pushes)
	l.pushes = append(l.pushes, Received{Header: r.Header.Clone(), Request: req, Size: size})
	l.mu.Unlock()
	status, msg := http.StatusNoContent, ""
	if l.Answer != nil {
		status, msg = l.Answer(kept, &req)
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

// Decode reads a push body as Loki does (snappy, then protobuf) and returns
// it with its decompressed size.
func Decode(body []byte) (req push.PushRequest, size int, err error) {
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return req, 0, fmt.Errorf("snappy: %w", err)
	}
	if err := req.Unmarshal(raw); err != nil {
		return req, len(raw), fmt.Errorf("protobuf: %w", err)
	}
	return req, len(raw), nil
}

// Requests is how many requests arrived, answered by Respond or not.
func (l *Loki) Requests() int { return int(l.requests.Load()) }

// Pushes returns the pushes kept, oldest first.
func (l *Loki) Pushes() []Received {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Received(nil), l.pushes...)
}

// Lines returns every kept line by its stream's labels, in push order.
func (l *Loki) Lines() map[string][]string {
	out := map[string][]string{}
	for _, p := range l.Pushes() {
		for _, s := range p.Request.Streams {
			for _, e := range s.Entries {
				out[s.Labels] = append(out[s.Labels], e.Line)
			}
		}
	}
	return out
}

// Entries returns every kept entry of the stream with the given labels.
func (l *Loki) Entries(labels string) []push.Entry {
	var out []push.Entry
	for _, p := range l.Pushes() {
		for _, s := range p.Request.Streams {
			if s.Labels == labels {
				out = append(out, s.Entries...)
			}
		}
	}
	return out
}
