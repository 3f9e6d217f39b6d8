// Package telemetryApi subscribes to the Lambda Telemetry API, receives its
// batches on an HTTP listener, queues the function's log lines, and hands
// them to a dispatcher that pushes them.
package telemetryApi

import (
	"encoding/json"
	"time"
)

// Event types of the Telemetry API that the extension reads
// (docs/lambda-runtime-contract.md#event-catalogue).
const (
	TypeFunction             = "function"
	TypeExtension            = "extension"
	TypePlatformStart        = "platform.start"
	TypePlatformRuntimeDone  = "platform.runtimeDone"
	TypePlatformReport       = "platform.report"
	TypePlatformLogsDropped  = "platform.logsDropped"
	TypePlatformRestoreStart = "platform.restoreStart"
)

// Event is one item of a Telemetry API batch. Record stays raw because its
// shape depends on the type and on the log format: a string for text logs,
// an object for JSON logs and platform events.
type Event struct {
	Time   string          `json:"time"`
	Type   string          `json:"type"`
	Record json.RawMessage `json:"record"`
}

// RuntimeDone is the record of platform.runtimeDone: the runtime finished an
// invocation, and every line it wrote during it was emitted before.
type RuntimeDone struct {
	RequestID string             `json:"requestId"`
	Status    string             `json:"status"`
	ErrorType string             `json:"errorType,omitempty"`
	Metrics   RuntimeDoneMetrics `json:"metrics"`
}

// RuntimeDoneMetrics are the measurements of platform.runtimeDone.
type RuntimeDoneMetrics struct {
	DurationMs    float64 `json:"durationMs"`
	ProducedBytes int64   `json:"producedBytes"`
}

// Start is the record of platform.start.
type Start struct {
	RequestID string        `json:"requestId"`
	Version   string        `json:"version,omitempty"`
	Tracing   *TraceContext `json:"tracing,omitempty"`
}

// TraceContext is the trace of an invocation under active tracing: Type is
// X-Amzn-Trace-Id and Value the X-Ray trace header.
type TraceContext struct {
	SpanID string `json:"spanId,omitempty"`
	Type   string `json:"type"`
	Value  string `json:"value"`
}

// Report is the record of platform.report, sent after an invocation ends.
type Report struct {
	RequestID string        `json:"requestId"`
	Status    string        `json:"status"`
	ErrorType string        `json:"errorType,omitempty"`
	Metrics   ReportMetrics `json:"metrics"`
}

// ReportMetrics are the figures of a REPORT line. Managed Instances send
// only DurationMs.
type ReportMetrics struct {
	DurationMs        float64  `json:"durationMs"`
	BilledDurationMs  *int64   `json:"billedDurationMs,omitempty"`
	MemorySizeMB      *int64   `json:"memorySizeMB,omitempty"`
	MaxMemoryUsedMB   *int64   `json:"maxMemoryUsedMB,omitempty"`
	InitDurationMs    *float64 `json:"initDurationMs,omitempty"`
	RestoreDurationMs *float64 `json:"restoreDurationMs,omitempty"`
}

// LogsDropped is the record of platform.logsDropped: Lambda dropped records
// before they reached the listener.
type LogsDropped struct {
	DroppedBytes   int64  `json:"droppedBytes"`
	DroppedRecords int64  `json:"droppedRecords"`
	Reason         string `json:"reason"`
}

// parseTime reads an event's time: RFC 3339 with an optional fraction, as
// Lambda writes it ("2022-10-12T00:00:15.064Z"). ok is false when it is
// missing or malformed.
func parseTime(s string) (t time.Time, ok bool) {
	if t, ok = parseLambdaMillis(s); ok {
		return t, true
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// parseLambdaMillis parses the layout Lambda uses for nearly every event,
// 2006-01-02T15:04:05.000Z, without time.Parse's generality: it runs once
// per log line.
func parseLambdaMillis(s string) (time.Time, bool) {
	if len(s) != 24 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != '.' || s[23] != 'Z' {
		return time.Time{}, false
	}
	num := func(i, n int) (int, bool) {
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	year, ok1 := num(0, 4)
	month, ok2 := num(5, 2)
	day, ok3 := num(8, 2)
	hour, ok4 := num(11, 2)
	minute, ok5 := num(14, 2)
	sec, ok6 := num(17, 2)
	ms, ok7 := num(20, 3)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, ms*int(time.Millisecond), time.UTC), true
}
