package telemetryApi

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// recordEntry turns a function or extension record into an entry. Text log
// format sends a string, kept as written less one trailing newline; JSON log
// format sends an object, shipped as one compact JSON line with all its keys
// and stamped with its own timestamp. Any other shape is shipped as its raw
// JSON text, so nothing the function wrote is silently lost.
func recordEntry(ev *Event, stream loki.StreamType, received time.Time) loki.Entry {
	e := loki.Entry{Stream: stream}
	t, ok := parseTime(ev.Time)
	if !ok {
		t = received
	}
	e.Time = t
	raw := bytes.TrimSpace(ev.Record)
	if len(raw) == 0 {
		return e
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			e.Line = strings.TrimSuffix(s, "\n")
			return e
		}
	case '{':
		var fields struct {
			Timestamp string `json:"timestamp"`
			Level     string `json:"level"`
		}
		if err := json.Unmarshal(raw, &fields); err == nil {
			if ts, ok := parseTime(fields.Timestamp); ok {
				e.Time = ts
			}
			e.Level = fields.Level
		}
	}
	e.Line = compactJSON(raw)
	return e
}

// compactJSON returns raw without insignificant white space; raw is already
// known to be valid JSON because it was decoded as part of the batch.
func compactJSON(raw []byte) string {
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}

// Platform lines in CloudWatch's format, which users already know how to read
// and query.

func startLine(s Start) string {
	line := "START RequestId: " + s.RequestID
	if s.Version != "" {
		line += " Version: " + s.Version
	}
	return line
}

func endLine(rd RuntimeDone) string { return "END RequestId: " + rd.RequestID }

func reportLine(r Report) string {
	var b strings.Builder
	b.WriteString("REPORT RequestId: ")
	b.WriteString(r.RequestID)
	b.WriteString("\tDuration: ")
	b.WriteString(strconv.FormatFloat(r.Metrics.DurationMs, 'f', 2, 64))
	b.WriteString(" ms")
	if m := r.Metrics.BilledDurationMs; m != nil {
		b.WriteString("\tBilled Duration: " + strconv.FormatInt(*m, 10) + " ms")
	}
	if m := r.Metrics.MemorySizeMB; m != nil {
		b.WriteString("\tMemory Size: " + strconv.FormatInt(*m, 10) + " MB")
	}
	if m := r.Metrics.MaxMemoryUsedMB; m != nil {
		b.WriteString("\tMax Memory Used: " + strconv.FormatInt(*m, 10) + " MB")
	}
	if m := r.Metrics.InitDurationMs; m != nil {
		b.WriteString("\tInit Duration: " + strconv.FormatFloat(*m, 'f', 2, 64) + " ms")
	}
	if m := r.Metrics.RestoreDurationMs; m != nil {
		b.WriteString("\tRestore Duration: " + strconv.FormatFloat(*m, 'f', 2, 64) + " ms")
	}
	if r.Status != "" && r.Status != "success" {
		b.WriteString("\tStatus: " + r.Status)
		if r.ErrorType != "" {
			b.WriteString("\tError Type: " + r.ErrorType)
		}
	}
	return b.String()
}

// failureLine says that an invocation did not succeed. It goes to the
// function's own stream whatever the settings, because a timed-out or
// crashed invocation is the first thing users search for.
func failureLine(rd RuntimeDone) string {
	what := "Invocation failed"
	if rd.Status == "timeout" {
		what = "Task timed out"
	}
	line := what + ": RequestId: " + rd.RequestID + " Status: " + rd.Status
	if rd.ErrorType != "" {
		line += " Error Type: " + rd.ErrorType
	}
	if rd.Metrics.DurationMs > 0 {
		line += " Duration: " + strconv.FormatFloat(rd.Metrics.DurationMs, 'f', 2, 64) + " ms"
	}
	return line
}
