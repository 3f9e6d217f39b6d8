package sandbox

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"strings"
	"time"
)

// The telemetry log fd's framing (docs/lambda-runtime-contract.md#the-telemetry-log-fd):
// a 16-byte big-endian header (type, length, timestamp in microseconds),
// then the message.
const (
	frameHeaderBytes = 16
	frameMagic       = 0xa55a0000 // the type's upper half
	frameKindMask    = 0x3        // 2: a JSON message, 3: a text one
	frameLevelMask   = 0x1c       // the level's bits
	// maxFrameBytes bounds one frame's message; a larger length is taken
	// for a stream that is not framed.
	maxFrameBytes = 16 << 20
)

// frameLevel names the level a frame type carries, "" for none.
func frameLevel(typ uint32) string {
	switch typ & frameLevelMask {
	case 0x04:
		return "TRACE"
	case 0x08:
		return "DEBUG"
	case 0x0c:
		return "INFO"
	case 0x10:
		return "WARN"
	case 0x14:
		return "ERROR"
	case 0x18:
		return "FATAL"
	}
	return ""
}

// runtimeLine makes a function record of one line of the runtime's stdout
// or stderr, stamped when it is captured (CaptureLag after now).
func (s *Sandbox) runtimeLine(rt *runtimeProc, line []byte) {
	s.functionRecord(rt, time.Now().Add(s.cfg.CaptureLag), string(line)+"\n", "")
}

// runtimeFrames makes a function record of every whole frame of data,
// stamped with the frame's own timestamp, and returns the rest. Bytes that
// are not a frame end the framing: they and what follows are captured as
// one record, so that nothing the runtime wrote is lost.
func (s *Sandbox) runtimeFrames(rt *runtimeProc, data []byte, atEOF bool) []byte {
	for len(data) >= frameHeaderBytes {
		typ := binary.BigEndian.Uint32(data[0:4])
		n := binary.BigEndian.Uint32(data[4:8])
		if typ&^0xffff != frameMagic || n > maxFrameBytes {
			s.functionRecord(rt, time.Now(), string(data), "")
			return nil
		}
		if len(data) < frameHeaderBytes+int(n) {
			break
		}
		at := time.UnixMicro(int64(binary.BigEndian.Uint64(data[8:16])))
		s.functionRecord(rt, at, string(data[frameHeaderBytes:frameHeaderBytes+int(n)]), frameLevel(typ))
		data = data[frameHeaderBytes+int(n):]
	}
	if atEOF && len(data) > 0 {
		s.functionRecord(rt, time.Now(), string(data), "")
		return nil
	}
	return data
}

// functionRecord emits the record Lambda makes of one message of the
// runtime (docs/lambda-runtime-contract.md#text-and-json-records): with
// the text format the message as a string; with the JSON format a message
// that is a JSON object as that object, any other wrapped in one with the
// time, the level (the frame's, else INFO) and the message. The line an
// extension is expected to ship for it goes to the invocation it belongs
// to, or to the init's lines.
func (s *Sandbox) functionRecord(rt *runtimeProc, at time.Time, msg, level string) {
	var want Line
	if s.cfg.LogFormat != "json" {
		ev := s.emit("function", at, msg, "")
		want = Line{Time: ev.time.Truncate(time.Millisecond), Text: strings.TrimSuffix(msg, "\n")}
		if obj := jsonObject(msg); obj != "" {
			// A text line that is a JSON object keeps its own timestamp.
			want.Time = ownTimestamp(obj, ev.time)
		}
	} else {
		obj := jsonObject(msg)
		if obj == "" {
			if level == "" {
				level = "INFO"
			}
			wrapped, _ := json.Marshal(struct {
				Timestamp string `json:"timestamp"`
				Level     string `json:"level"`
				Message   string `json:"message"`
			}{at.UTC().Format(TimeLayout), level, strings.TrimSuffix(msg, "\n")})
			obj = string(wrapped)
		}
		ev := s.emit("function", at, "", obj)
		want = Line{Time: ownTimestamp(obj, ev.time), Text: compact(obj)}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch owner := s.lineOwner(rt); {
	case owner != nil:
		owner.res.Lines = append(owner.res.Lines, want)
	case !s.subscriptionClosed:
		s.initLines = append(s.initLines, want)
	}
}

// lineOwner is the invocation the runtime's output belongs to: the one
// running, while it is the only one; s.mu must be held.
func (s *Sandbox) lineOwner(rt *runtimeProc) *invocation {
	if len(rt.running) == 1 {
		return rt.running[0]
	}
	return nil
}

// jsonObject returns msg without surrounding white space if it is one JSON
// object, else "".
func jsonObject(msg string) string {
	trimmed := strings.TrimSpace(msg)
	if len(trimmed) < 2 || trimmed[0] != '{' || !json.Valid([]byte(trimmed)) {
		return ""
	}
	return trimmed
}

// ownTimestamp is the time an extension stamps on an object record, or on
// a text record that is one JSON object: its timestamp when that is an RFC
// 3339 string, else the event's time, to the millisecond.
func ownTimestamp(obj string, eventTime time.Time) time.Time {
	var rec struct {
		Timestamp string `json:"timestamp"`
	}
	if json.Unmarshal([]byte(obj), &rec) == nil {
		if t, err := time.Parse(time.RFC3339Nano, rec.Timestamp); err == nil {
			return t.UTC().Truncate(time.Millisecond)
		}
	}
	return eventTime.UTC().Truncate(time.Millisecond)
}

// compact is obj without insignificant white space, as an extension ships it.
func compact(obj string) string {
	var b bytes.Buffer
	if json.Compact(&b, []byte(obj)) != nil {
		return obj
	}
	return b.String()
}
