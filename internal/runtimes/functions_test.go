package runtimes

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// flavour is what differs between the runtimes' output.
type flavour struct {
	runtime string // as in Function.Runtime
	build   func(t *testing.T) Function
	// levels names the spec's levels as the runtime prints them.
	levels map[string]string
	// structured is the message of the spec's structured line.
	structured func(marker string) string
	// errorType is the type of the handler's "boom" error in /error.
	errorType string
	// traceKey is the /error body's stack trace field.
	traceKey string
	// errorRecord tells whether r is the runtime's log record of the
	// handler's "boom m-fail" error, in the format opts chose.
	errorRecord func(opts runOptions, r record) bool
}

// Frame level bits on the telemetry fd, the same in both runtime clients.
var frameLevel = map[string]uint32{"debug": 8, "info": 12, "warn": 16, "error": 20}

var typeScriptFlavour = flavour{
	runtime: "nodejs",
	build:   func(t *testing.T) Function { return buildOrSkip(t, typeScript) },
	levels:  map[string]string{"debug": "DEBUG", "info": "INFO", "warn": "WARN", "error": "ERROR"},
	structured: func(m string) string {
		return fmt.Sprintf(`{"level":"INFO","message":"structured line %s","marker":"%s"}`, m, m)
	},
	errorType: "Error",
	traceKey:  "trace", // Node.js's runtime client names it so
	errorRecord: func(opts runOptions, r record) bool {
		if opts.format == "JSON" { // the error object as the message
			m, _ := r.fields["message"].(map[string]any)
			return r.level == "ERROR" && m["errorMessage"] == "boom m-fail" && m["errorType"] == "Error"
		}
		return r.level == "ERROR" && strings.HasPrefix(r.message, "Invoke Error \t{") && strings.Contains(r.message, `"errorMessage":"boom m-fail"`)
	},
}

var pythonFlavour = flavour{
	runtime:    "python",
	build:      func(t *testing.T) Function { return buildOrSkip(t, python) },
	levels:     map[string]string{"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "error": "ERROR"},
	structured: func(m string) string { return "structured line " + m },
	errorType:  "Exception",
	traceKey:   "stackTrace",
	errorRecord: func(opts runOptions, r record) bool {
		if opts.format == "JSON" {
			return r.level == "ERROR" && r.fields["errorMessage"] == "boom m-fail" && r.fields["errorType"] == "Exception"
		}
		sep := "\r" // one line on stdout
		if opts.fd {
			sep = "\n" // one frame
		}
		return strings.HasPrefix(r.raw, "[ERROR] Exception: boom m-fail"+sep+"Traceback (most recent call last):"+sep+"\u00a0\u00a0File ")
	},
}

// specLine is one line the spec has every function write.
type specLine struct{ level, message string }

func specLines(f flavour, m string) []specLine {
	return []specLine{
		{"debug", "debug line " + m},
		{"info", "info line " + m},
		{"warn", "warn line " + m},
		{"error", "error line " + m},
		{"info", "multi line " + m + "\nsecond line\nthird line"},
		{"info", f.structured(m)},
		{"info", "contact alice@example.com " + m},
	}
}

// record is one log record as the runtime printed it.
type record struct {
	raw       string
	frameType uint32 // 0 on stdout
	parsed    bool
	level     string
	requestID string
	message   string
	fields    map[string]any // JSON format only
}

func TestTypeScriptRuns(t *testing.T) { testRuns(t, typeScriptFlavour) }

func TestPythonRuns(t *testing.T) { testRuns(t, pythonFlavour) }

func testRuns(t *testing.T, f flavour) {
	fn := f.build(t)
	cases := []struct {
		name string
		opts runOptions
		// levels the run must show; nil means all four
		shown []string
	}{
		{"text to stdout", runOptions{format: "Text", level: "DEBUG"}, nil},
		{"text to the telemetry fd", runOptions{format: "Text", level: "DEBUG", fd: true}, nil},
		{"JSON to stdout", runOptions{format: "JSON", level: "DEBUG"}, nil},
		{"JSON to the telemetry fd", runOptions{format: "JSON", level: "DEBUG", fd: true}, nil},
		{"level WARN", runOptions{format: "JSON", level: "WARN", fd: true}, []string{"warn", "error"}},
	}
	if f.runtime == "python" {
		// With AWS_LAMBDA_LOG_LEVEL unset (the text format) the runtime
		// leaves the root logger alone and the handler sets its own level,
		// DEBUG; frames carry no level then.
		cases = append(cases, struct {
			name  string
			opts  runOptions
			shown []string
		}{"text, no level set", runOptions{format: "Text", fd: true}, nil})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := invoke(t, fn, `{"marker":"m-ok","action":"ok"}`, tc.opts)
			if out.post.kind != "response" {
				t.Fatalf("posted %s %s, want a response", out.post.kind, out.post.body)
			}
			var got map[string]any
			if err := json.Unmarshal(out.post.body, &got); err != nil || got["ok"] != true || got["marker"] != "m-ok" || len(got) != 2 {
				t.Errorf("response %s (%v), want {\"ok\":true,\"marker\":\"m-ok\"}", out.post.body, err)
			}
			checkLines(t, f, tc.opts, parseRecords(f.runtime, tc.opts, out), "m-ok", tc.shown)
		})
	}
	t.Run("timeout", func(t *testing.T) {
		// The handler sleeps well past the deadline: no result comes.
		out := invoke(t, fn, `{"marker":"m-timeout","action":"timeout"}`, runOptions{format: "Text", level: "INFO", fd: true, timeout: 2 * time.Second})
		if find(parseRecords(f.runtime, runOptions{format: "Text", fd: true}, out), "contact alice@example.com m-timeout") < 0 {
			t.Errorf("the handler did not run to its sleep; frames: %+v", out.frames)
		}
	})
	for _, opts := range []runOptions{{format: "Text", level: "INFO", fd: true}, {format: "JSON", level: "INFO"}} {
		t.Run("fail, "+opts.format, func(t *testing.T) {
			out := invoke(t, fn, `{"marker":"m-fail","action":"fail"}`, opts)
			checkError(t, f, opts, parseRecords(f.runtime, opts, out), out.post)
		})
	}
}

// checkLines checks that the spec's lines of the shown levels appear in
// order, each at its level with the request ID, and no others.
func checkLines(t *testing.T, f flavour, opts runOptions, recs []record, marker string, shown []string) {
	t.Helper()
	if testing.Verbose() {
		t.Logf("records:\n%s", dump(recs))
	}
	show := map[string]bool{}
	for _, l := range shown {
		show[l] = true
	}
	next := 0
	for _, want := range specLines(f, marker) {
		i := find(recs[next:], want.message)
		if shown != nil && !show[want.level] {
			if i >= 0 {
				t.Errorf("%q printed at level %s", want.message, opts.level)
			}
			continue
		}
		if i < 0 {
			t.Errorf("no record %q after record %d; records:\n%s", want.message, next, dump(recs))
			continue
		}
		r := recs[next+i]
		next += i + 1
		if !r.parsed {
			t.Errorf("record %q is not in the runtime's %s format", r.raw, opts.format)
			continue
		}
		if r.level != f.levels[want.level] || r.requestID != "8476a536-e9f4-11e8-9739-2dfe598c3fcd" {
			t.Errorf("record %q: level %q request ID %q, want %q and the invocation's", r.raw, r.level, r.requestID, f.levels[want.level])
		}
		if w := wholeMessage(want.message, opts, f); r.message != w {
			t.Errorf("record message %q, want %q", r.message, w)
		}
		if opts.fd {
			wantType := uint32(0xA55A0003)
			if opts.format == "JSON" {
				wantType = 0xA55A0002
			}
			if opts.level != "" {
				wantType |= frameLevel[want.level]
			}
			if r.frameType != wantType {
				t.Errorf("record %q: frame type %#x, want %#x", r.raw, r.frameType, wantType)
			}
		}
		if strings.HasPrefix(want.message, "structured") && opts.format == "JSON" && f.runtime == "python" && r.fields["marker"] != marker {
			t.Errorf("structured record %q has no marker field", r.raw)
		}
	}
}

// wholeMessage is the spec message as a record carries it: whole on the
// telemetry fd and in JSON; on stdout in text, Node.js's client turns the
// newlines into carriage returns, and Python's prints them as they are, so
// its record there holds the first line only.
func wholeMessage(msg string, opts runOptions, f flavour) string {
	if opts.fd || opts.format == "JSON" {
		return msg
	}
	if f.runtime == "nodejs" {
		return strings.ReplaceAll(msg, "\n", "\r")
	}
	first, _, _ := strings.Cut(msg, "\n")
	return first
}

func find(recs []record, message string) int {
	first := firstLine(message)
	for i, r := range recs {
		if firstLine(r.message) == first || (!r.parsed && strings.Contains(r.raw, first)) {
			return i
		}
	}
	return -1
}

func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

// checkError checks the /error body of a failed invocation and the ERROR
// record the runtime logs for it.
func checkError(t *testing.T, f flavour, opts runOptions, recs []record, post apiPost) {
	t.Helper()
	if testing.Verbose() {
		t.Logf("error body %s; records:\n%s", post.body, dump(recs))
	}
	if post.kind != "error" {
		t.Fatalf("posted %s %s, want an error", post.kind, post.body)
	}
	var body map[string]any
	if err := json.Unmarshal(post.body, &body); err != nil {
		t.Fatalf("error body %s: %v", post.body, err)
	}
	trace, _ := body[f.traceKey].([]any)
	if body["errorMessage"] != "boom m-fail" || body["errorType"] != f.errorType || len(trace) == 0 {
		t.Errorf("error body %s, want errorMessage \"boom m-fail\", errorType %q and a %s", post.body, f.errorType, f.traceKey)
	}
	for _, r := range recs {
		if !strings.Contains(r.raw, "boom m-fail") {
			continue
		}
		if !f.errorRecord(opts, r) || (opts.fd && r.frameType&0x1c != frameLevel["error"]) {
			t.Errorf("error record %q (frame type %#x) is not the runtime's ERROR record of the error", r.raw, r.frameType)
		}
		return
	}
	t.Errorf("no record of the error; records:\n%s", dump(recs))
}

// parseRecords splits a run's output into records and parses each in the
// runtime's format.
func parseRecords(runtime string, opts runOptions, out runOutput) []record {
	var recs []record
	if opts.fd {
		for _, fr := range out.frames {
			recs = append(recs, record{raw: fr.message, frameType: fr.typ})
		}
	} else {
		for _, line := range strings.Split(strings.TrimSuffix(out.stdout, "\n"), "\n") {
			recs = append(recs, record{raw: line})
		}
	}
	for i := range recs {
		parseRecord(runtime, opts.format, &recs[i])
	}
	return recs
}

func parseRecord(runtime, format string, r *record) {
	text := strings.TrimSuffix(r.raw, "\n")
	if format == "JSON" {
		if err := json.Unmarshal([]byte(text), &r.fields); err != nil {
			return
		}
		r.level, _ = r.fields["level"].(string)
		r.requestID, _ = r.fields["requestId"].(string)
		r.message, _ = r.fields["message"].(string)
		_, hasTime := r.fields["timestamp"].(string)
		r.parsed = hasTime && r.level != ""
		return
	}
	var stamp string
	var parts []string
	if runtime == "python" { // [LEVEL]\t<time>\t<request ID>\t<message>
		level, rest, ok := strings.Cut(text, "\t")
		if !ok || !strings.HasPrefix(level, "[") || !strings.HasSuffix(level, "]") {
			return
		}
		r.level = strings.Trim(level, "[]")
		if parts = strings.SplitN(rest, "\t", 3); len(parts) < 3 {
			return
		}
		stamp, r.requestID, r.message = parts[0], parts[1], parts[2]
	} else { // <time>\t<request ID>\t<LEVEL>\t<message>
		if parts = strings.SplitN(text, "\t", 4); len(parts) < 4 {
			return
		}
		stamp, r.requestID, r.level, r.message = parts[0], parts[1], parts[2], parts[3]
	}
	// Both print UTC with milliseconds: 2006-01-02T15:04:05.000Z.
	_, err := time.Parse("2006-01-02T15:04:05.000Z", stamp)
	r.parsed = err == nil
}

func dump(recs []record) string {
	var b strings.Builder
	for i, r := range recs {
		fmt.Fprintf(&b, "  %d: %#x %q\n", i, r.frameType, r.raw)
	}
	return b.String()
}

// TestInitError: a handler that cannot be loaded is reported through
// /init/error with Lambda's error type, and the runtime exits.
func TestInitError(t *testing.T) {
	for _, f := range []flavour{typeScriptFlavour, pythonFlavour} {
		t.Run(f.runtime, func(t *testing.T) {
			fn := f.build(t)
			out := invoke(t, fn, `{}`, runOptions{format: "Text", handler: "nosuchmodule.handler"})
			var body map[string]any
			if err := json.Unmarshal(out.post.body, &body); err != nil {
				t.Fatalf("posted %s %s: %v", out.post.kind, out.post.body, err)
			}
			msg, _ := body["errorMessage"].(string)
			if out.post.kind != "init/error" || body["errorType"] != "Runtime.ImportModuleError" || !strings.Contains(msg, "nosuchmodule") {
				t.Errorf("posted %s %s, want init/error with Runtime.ImportModuleError naming the module", out.post.kind, out.post.body)
			}
		})
	}
}
