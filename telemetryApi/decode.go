package telemetryApi

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/lambda-loki/grafana-loki-extension/loglevel"
	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// recordEntry turns a function or extension record into an entry. Text log
// format sends a string, kept as written less one trailing newline; JSON log
// format sends an object, shipped as one compact JSON line with all its keys
// and stamped with its own timestamp. Any other shape is shipped as its raw
// JSON text, so nothing the function wrote is silently lost. A text record
// that is itself one JSON object is kept as written but read like an object
// record for its timestamp, level and request. requestID is the record's own
// top-level requestId, when it has one.
func recordEntry(ev *Event, stream loki.StreamType, received time.Time) (e loki.Entry, requestID string) {
	e = loki.Entry{Stream: stream}
	t, ok := parseTime(ev.Time)
	if !ok {
		t = received
	}
	e.Time = t
	raw := bytes.TrimSpace(ev.Record)
	if len(raw) == 0 {
		return e, ""
	}
	switch raw[0] {
	case '"':
		if s, ok := unquoteJSONString(raw); ok {
			e.Line = strings.TrimSuffix(s, "\n")
			if isObjectText(e.Line) {
				// A text record that is a JSON object (a structured logger
				// printing its own JSON, as on Managed Instances, where text
				// lines of concurrent invocations interleave) names its own
				// request; the line is kept as written.
				requestID = objectFields(&e, []byte(e.Line))
			}
			return e, requestID
		}
	case '{':
		requestID = objectFields(&e, raw)
	}
	e.Line = compactJSON(raw)
	return e, requestID
}

// isObjectText reports whether a text line looks like one JSON object, so
// that only such lines pay for decoding.
func isObjectText(line string) bool {
	line = strings.TrimSpace(line)
	return len(line) >= 2 && line[0] == '{' && line[len(line)-1] == '}'
}

// objectFields reads a JSON object's top-level timestamp and level into e
// and returns its requestId ("" if absent, too long, or raw is not an
// object). Each key is read on its own: a logger that writes a numeric
// level (pino, bunyan) or an epoch timestamp must not cost the record the
// other one.
func objectFields(e *loki.Entry, raw []byte) (requestID string) {
	var fields struct {
		Timestamp json.RawMessage `json:"timestamp"`
		Level     json.RawMessage `json:"level"`
		RequestID string          `json:"requestId"`
	}
	if err := json.Unmarshal(raw, &fields); err != nil {
		return ""
	}
	if ts, ok := recordTime(fields.Timestamp); ok {
		e.Time = ts
	}
	e.Level = recordLevel(fields.Level)
	if len(fields.RequestID) <= loki.MaxRequestIDBytes {
		requestID = fields.RequestID
	}
	return requestID
}

// recordTime reads a JSON record's timestamp: a string as parseTime reads
// it, or a number of milliseconds since the epoch (seconds too, told apart
// by size: both cover the years 2001 to 2286). ok is false for anything
// else, and the event's time stands in.
func recordTime(raw json.RawMessage) (time.Time, bool) {
	if len(raw) == 0 {
		return time.Time{}, false
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return time.Time{}, false
		}
		return parseTime(s)
	}
	n, err := strconv.ParseFloat(string(raw), 64)
	switch {
	case err != nil:
		return time.Time{}, false
	case n >= 1e12 && n < 1e13:
		return time.UnixMicro(int64(n * 1e3)).UTC(), true
	case n >= 1e9 && n < 1e10:
		return time.UnixMicro(int64(n * 1e6)).UTC(), true
	}
	return time.Time{}, false
}

// recordLevel is the record's level as written when it is a string (the
// level label shows it in lower case), and the normalised name of a
// numeric pino/bunyan level ("error" for 50).
func recordLevel(raw json.RawMessage) string {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		return ""
	}
	return loglevel.FromJSON(raw).String()
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

// unquoteJSONString decodes a JSON string literal the way encoding/json
// does (escapes resolved; each byte of invalid UTF-8 and each unpaired
// surrogate escape becomes U+FFFD) without its reflection and without
// validating the whole literal a second time: it runs once per log line,
// on a literal json.Unmarshal already accepted as part of the batch. ok is
// false for anything that is not a well-formed literal.
func unquoteJSONString(lit []byte) (s string, ok bool) {
	if len(lit) < 2 || lit[0] != '"' || lit[len(lit)-1] != '"' {
		return "", false
	}
	in := lit[1 : len(lit)-1]
	// Most lines need no rewriting up to their first escape (a text record
	// always ends in \n): copy that prefix in one go.
	plain := plainPrefix(in)
	if plain == len(in) {
		return string(in), true
	}
	var b strings.Builder
	b.Grow(len(in))
	b.Write(in[:plain])
	for i := plain; i < len(in); {
		c := in[i]
		switch {
		case c == '\\':
			n, ok := writeEscape(&b, in[i:])
			if !ok {
				return "", false
			}
			i += n
		case c == '"' || c < ' ':
			return "", false
		case c < utf8.RuneSelf:
			// Copy the run of plain ASCII up to the next escape in one go.
			j := i + 1
			for j < len(in) && in[j] < utf8.RuneSelf && in[j] >= ' ' && in[j] != '\\' && in[j] != '"' {
				j++
			}
			b.Write(in[i:j])
			i = j
		default:
			r, size := utf8.DecodeRune(in[i:])
			b.WriteRune(r) // RuneError for an invalid byte, as encoding/json does
			i += size
		}
	}
	return b.String(), true
}

// plainPrefix is the length of in's leading run that decodes to itself: no
// escape, quote or control byte, and valid UTF-8.
func plainPrefix(in []byte) int {
	plain := 0
	for plain < len(in) {
		c := in[plain]
		if c == '\\' || c == '"' || c < ' ' {
			break
		}
		if c < utf8.RuneSelf {
			plain++
			continue
		}
		r, size := utf8.DecodeRune(in[plain:])
		if r == utf8.RuneError && size == 1 {
			break
		}
		plain += size
	}
	return plain
}

// writeEscape writes the character of the escape at the start of in (which
// begins with a backslash) and returns how many bytes it took. A surrogate
// pair is two \u escapes; a lone surrogate becomes U+FFFD.
func writeEscape(b *strings.Builder, in []byte) (n int, ok bool) {
	if len(in) < 2 {
		return 0, false
	}
	switch esc := in[1]; esc {
	case '"', '\\', '/', '\'':
		b.WriteByte(esc)
	case 'b':
		b.WriteByte('\b')
	case 'f':
		b.WriteByte('\f')
	case 'n':
		b.WriteByte('\n')
	case 'r':
		b.WriteByte('\r')
	case 't':
		b.WriteByte('\t')
	case 'u':
		r, ok := hex4(in[2:])
		if !ok {
			return 0, false
		}
		if utf16.IsSurrogate(r) {
			low := rune(-1)
			if len(in) >= 12 && in[6] == '\\' && in[7] == 'u' {
				low, _ = hex4(in[8:])
			}
			if pair := utf16.DecodeRune(r, low); pair != utf8.RuneError {
				b.WriteRune(pair)
				return 12, true
			}
			r = utf8.RuneError
		}
		b.WriteRune(r)
		return 6, true
	default:
		return 0, false
	}
	return 2, true
}

// hex4 reads the four hex digits of a \u escape.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
