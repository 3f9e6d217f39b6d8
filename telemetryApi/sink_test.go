package telemetryApi

import (
	"sync"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// recordingSink is the listener's Sink in these tests: it keeps what it is
// handed, in order, and counts it as the outbox's queue does.
type recordingSink struct {
	mu      sync.Mutex
	entries []loki.Entry
	bytes   int
}

func newSink() *recordingSink { return &recordingSink{} }

func (s *recordingSink) Put(entries []loki.Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range entries {
		s.bytes += entries[i].Size()
	}
	s.entries = append(s.entries, entries...)
}

// Len is how many entries were handed over and not taken.
func (s *recordingSink) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Bytes is what the entries handed over count (loki.Entry.Size).
func (s *recordingSink) Bytes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Take removes and returns the oldest entries, up to max.
func (s *recordingSink) Take(max int) []loki.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(max, len(s.entries))
	got := s.entries[:n:n]
	s.entries = s.entries[n:]
	for i := range got {
		s.bytes -= got[i].Size()
	}
	return got
}
