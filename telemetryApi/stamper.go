package telemetryApi

import (
	"math/rand/v2"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// stamper keeps entries of one stream from sharing a timestamp. Lambda
// stamps events to the millisecond, and Loki keeps only one of several
// entries whose stream, timestamp and line are equal: a line a function
// writes twice within a millisecond would otherwise be stored once. A
// repeated or slightly older time is moved just past the stream's last one,
// a nanosecond at a time, so it stays inside the same millisecond (and a
// retried push carries the same stamps, which Loki still deduplicates).
//
// Every sandbox of a function writes to the same streams, so the sandbox's
// own offset inside the millisecond (salt, drawn at random) keeps two
// sandboxes' copies of a line written in the same millisecond apart too.
// The caller serialises use (Listener.batchMu).
type stamper struct {
	last [3]time.Time // by loki.StreamType
	salt time.Duration
}

// newStamper returns a stamper with this sandbox's random offset.
func newStamper() *stamper {
	s := &stamper{}
	s.resalt()
	return s
}

// resalt draws the sandbox's offset again: SnapStart restores many
// sandboxes from one snapshot, which would otherwise all share the offset
// drawn before it. The offset stays short of a millisecond by room for the
// repeats added nanosecond by nanosecond.
func (s *stamper) resalt() {
	s.salt = rand.N(900 * time.Microsecond)
}

// stamp gives a batch's entries, in order, their stamps.
func (s *stamper) stamp(entries []loki.Entry) {
	for i := range entries {
		entries[i].Time = s.next(entries[i].Stream, entries[i].Time)
	}
}

// next returns the stamp for an entry of stream written at t.
func (s *stamper) next(stream loki.StreamType, t time.Time) time.Time {
	if t.Nanosecond()%int(time.Millisecond) == 0 {
		// Lambda's millisecond times only; a finer time (a JSON record's
		// own timestamp, say) is kept as it is.
		t = t.Add(s.salt)
	}
	i := int(stream) % len(s.last)
	last := s.last[i]
	switch {
	case t.After(last):
		s.last[i] = t
	case last.Sub(t) < time.Millisecond && last.Add(time.Nanosecond).Truncate(time.Millisecond).Equal(t.Truncate(time.Millisecond)):
		t = last.Add(time.Nanosecond)
		s.last[i] = t
	}
	return t
}
