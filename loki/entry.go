// Package loki pushes log entries to Grafana Loki's push API.
//
// It groups entries into streams, sorts each stream by time, keeps every
// request inside Loki's limits and sends it synchronously, bounded by the
// caller's context. It never queues on its own: what it could not deliver is
// handed back to the caller, who decides when to try again.
package loki

import "time"

// StreamType names the Loki stream an entry belongs to. The client turns each
// type into its label set once, so no label string is built per line.
type StreamType uint8

const (
	// StreamFunction holds the function's own log lines:
	// {source="lambda", function="<name>", <user labels>}.
	StreamFunction StreamType = iota
	// StreamPlatform holds START/END/REPORT style platform lines: the function
	// labels plus type="platform".
	StreamPlatform
	// StreamExtension holds log lines written by extensions: the function
	// labels plus type="extension".
	StreamExtension
)

// String returns the value of the type label for the stream, or "function".
func (s StreamType) String() string {
	switch s {
	case StreamPlatform:
		return "platform"
	case StreamExtension:
		return "extension"
	default:
		return "function"
	}
}

// Entry is one log line as the function wrote it, with the time Lambda
// stamped on it.
type Entry struct {
	// Time is the event's own timestamp, never the time of the push.
	Time time.Time
	// Line is the log line exactly as written, less one trailing newline.
	Line string
	// Stream says which label set the entry is pushed under.
	Stream StreamType
	// Level is the record's log level when the function logs in JSON format;
	// it becomes a label when the client is configured for it, and is sent
	// as structured metadata otherwise.
	Level string
	// RequestID is the invocation the line belongs to ("" for init lines),
	// sent as structured metadata, never as a label.
	RequestID string
	// TraceID is the invocation's trace ID in the W3C/OpenTelemetry form (32
	// hex digits) when the function has active tracing, sent as structured
	// metadata.
	TraceID string
	// Meta is structured metadata the entry shares with others (the
	// sandbox's and the invocation's context, a REPORT's figures), encoded
	// once; nil for none. It is never changed once entries point to it.
	Meta *Metadata
}

// entryOverhead is what an entry costs beyond the bytes of its strings: the
// Entry value itself where the queue holds it (a test keeps this at least
// its size), the allocation that holds its line, and in a push the
// protobuf framing of its timestamp, line and metadata.
const entryOverhead = 120

// Size is the number of bytes the entry counts for in memory bounds and
// request size limits. It counts the structured metadata as pushed (values
// and framing) whether or not the client sends it, so a request stays
// within its bound either way; in memory, counting the shared request and
// trace IDs with every entry errs on the safe side.
func (e Entry) Size() int {
	return len(e.Line) + entryOverhead + metadataSize(&e, metaAll)
}
