package telemetryApi

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

func TestRecordEntry(t *testing.T) {
	received := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := time.Date(2022, 10, 12, 0, 0, 15, 64_000_000, time.UTC)
	tests := []struct {
		name      string
		event     string
		wantLine  string
		wantTime  time.Time
		wantLevel string
	}{
		{"text record keeps the runtime prefix, loses one trailing newline (docs/lambda-runtime-contract.md#text-and-json-records)",
			`{"time":"2022-10-12T00:00:15.064Z","type":"function","record":"2024-05-15T23:59:20.159Z\t8c18\tWARN\twarn from console\n"}`,
			"2024-05-15T23:59:20.159Z\t8c18\tWARN\twarn from console", ms, ""},
		{"text record without newline", `{"time":"2022-10-12T00:00:15.064Z","type":"function","record":"[INFO] Hello"}`, "[INFO] Hello", ms, ""},
		{"only one newline removed", `{"time":"2022-10-12T00:00:15.064Z","type":"function","record":"two\n\n"}`, "two\n", ms, ""},
		{"nanosecond event time", `{"time":"2022-10-12T00:00:15.064123456Z","type":"function","record":"x"}`, "x",
			time.Date(2022, 10, 12, 0, 0, 15, 64_123_456, time.UTC), ""},
		{"seconds-only event time", `{"time":"2023-11-28T12:00:09Z","type":"function","record":"x"}`, "x",
			time.Date(2023, 11, 28, 12, 0, 9, 0, time.UTC), ""},
		{"bad event time falls back to receipt", `{"time":"yesterday","type":"function","record":"x"}`, "x", received, ""},
		{"JSON record: compact, all keys, own timestamp and level",
			`{"time":"2022-10-12T00:00:15.064Z","type":"function","record":{ "timestamp":"2022-10-12T00:03:50.000Z", "level":"ERROR", "requestId":"79b4", "message":"boom", "extra": {"k": [1, 2]} }}`,
			`{"timestamp":"2022-10-12T00:03:50.000Z","level":"ERROR","requestId":"79b4","message":"boom","extra":{"k":[1,2]}}`,
			time.Date(2022, 10, 12, 0, 3, 50, 0, time.UTC), "ERROR"},
		{"JSON record with a numeric pino level keeps its timestamp too",
			`{"time":"2022-10-12T00:00:15.064Z","type":"function","record":{"timestamp":"2022-10-12T00:03:50.000Z","level":50,"msg":"boom"}}`,
			`{"timestamp":"2022-10-12T00:03:50.000Z","level":50,"msg":"boom"}`,
			time.Date(2022, 10, 12, 0, 3, 50, 0, time.UTC), "error"},
		{"JSON record with an epoch-millisecond timestamp keeps its level too",
			`{"time":"2022-10-12T00:00:15.064Z","type":"function","record":{"timestamp":1665533030123,"level":"WARN"}}`,
			`{"timestamp":1665533030123,"level":"WARN"}`,
			time.Date(2022, 10, 12, 0, 3, 50, 123_000_000, time.UTC), "WARN"},
		{"JSON record with an epoch-second timestamp",
			`{"time":"2022-10-12T00:00:15.064Z","type":"function","record":{"timestamp":1665533030.5,"level":30}}`,
			`{"timestamp":1665533030.5,"level":30}`,
			time.Date(2022, 10, 12, 0, 3, 50, 500_000_000, time.UTC), "info"},
		{"JSON record with a timestamp too small to be a date uses the event time",
			`{"time":"2022-10-12T00:00:15.064Z","type":"function","record":{"timestamp":42,"level":"INFO"}}`,
			`{"timestamp":42,"level":"INFO"}`, ms, "INFO"},
		{"JSON record with an unknown level kind",
			`{"time":"2022-10-12T00:00:15.064Z","type":"function","record":{"timestamp":"2022-10-12T00:03:50.000Z","level":{"n":1}}}`,
			`{"timestamp":"2022-10-12T00:03:50.000Z","level":{"n":1}}`, time.Date(2022, 10, 12, 0, 3, 50, 0, time.UTC), ""},
		{"JSON record without timestamp uses the event time", `{"time":"2022-10-12T00:00:15.064Z","type":"function","record":{"message":"m"}}`,
			`{"message":"m"}`, ms, ""},
		{"number record shipped as raw JSON", `{"time":"2022-10-12T00:00:15.064Z","type":"function","record":42}`, "42", ms, ""},
		{"array record shipped as raw JSON", `{"time":"2022-10-12T00:00:15.064Z","type":"function","record":[1, "a"]}`, `[1,"a"]`, ms, ""},
		{"null record", `{"time":"2022-10-12T00:00:15.064Z","type":"function","record":null}`, "null", ms, ""},
		{"invalid UTF-8 bytes become U+FFFD", "{\"time\":\"2022-10-12T00:00:15.064Z\",\"type\":\"function\",\"record\":\"a\xffb\"}", "a\uFFFDb", ms, ""},
		{"lone surrogate escape becomes U+FFFD", `{"time":"2022-10-12T00:00:15.064Z","type":"function","record":"a\udc80b"}`, "a\uFFFDb", ms, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ev Event
			if err := json.Unmarshal([]byte(tt.event), &ev); err != nil {
				t.Fatal(err)
			}
			e, _ := recordEntry(&ev, loki.StreamFunction, received)
			if e.Line != tt.wantLine || !e.Time.Equal(tt.wantTime) || e.Level != tt.wantLevel || e.Stream != loki.StreamFunction {
				t.Errorf("got line %q time %s level %q", e.Line, e.Time.Format(time.RFC3339Nano), e.Level)
			}
		})
	}
}

// A text record that is one JSON object (a structured logger printing its
// own JSON in text format, which is how Managed Instances functions tell
// their concurrent invocations apart) is kept as written, but its top-level
// requestId, level and timestamp count as a JSON-format record's do.
func TestTextRecordThatIsAnObject(t *testing.T) {
	ms := time.Date(2022, 10, 12, 0, 0, 15, 64_000_000, time.UTC)
	own := time.Date(2022, 10, 12, 0, 3, 50, 0, time.UTC)
	tests := []struct {
		name, record      string // the record's JSON string literal
		wantLine          string
		wantTime          time.Time
		wantLevel, wantID string
	}{
		{"top-level keys count; the line stays as written",
			`"{\"timestamp\": \"2022-10-12T00:03:50.000Z\", \"level\":\"WARN\",\"requestId\":\"79b4\",\"message\":\"m\"}\n"`,
			`{"timestamp": "2022-10-12T00:03:50.000Z", "level":"WARN","requestId":"79b4","message":"m"}`, own, "WARN", "79b4"},
		{"a numeric level and an epoch timestamp",
			`"{\"timestamp\":1665533030000,\"level\":50,\"requestId\":\"79b4\"}"`,
			`{"timestamp":1665533030000,"level":50,"requestId":"79b4"}`, own, "error", "79b4"},
		{"white space around the object",
			`"  {\"requestId\":\"79b4\"}  \n"`, `  {"requestId":"79b4"}  `, ms, "", "79b4"},
		{"a requestId only in a nested object does not count",
			`"{\"level\":\"INFO\",\"ctx\":{\"requestId\":\"79b4\",\"timestamp\":\"2022-10-12T00:03:50.000Z\"}}"`,
			`{"level":"INFO","ctx":{"requestId":"79b4","timestamp":"2022-10-12T00:03:50.000Z"}}`, ms, "INFO", ""},
		{"a requestId inside a message does not count",
			`"{\"message\":\"\\\"requestId\\\":\\\"79b4\\\"\"}"`,
			`{"message":"\"requestId\":\"79b4\""}`, ms, "", ""},
		{"braces that are not JSON stay plain text",
			`"{not json, requestId: 79b4}\n"`, `{not json, requestId: 79b4}`, ms, "", ""},
		{"an object followed by more text stays plain text",
			`"{\"requestId\":\"79b4\"} and {\"level\":\"INFO\"}"`, `{"requestId":"79b4"} and {"level":"INFO"}`, ms, "", ""},
		{"a requestId of the wrong type makes the object count for nothing, as in a JSON-format record",
			`"{\"requestId\":42,\"level\":\"INFO\"}"`, `{"requestId":42,"level":"INFO"}`, ms, "", ""},
		{"a text line with the runtime's prefix is not an object",
			`"2022-10-12T00:03:50.000Z\t79b4\tINFO\t{\"requestId\":\"x\"}\n"`,
			"2022-10-12T00:03:50.000Z\t79b4\tINFO\t{\"requestId\":\"x\"}", ms, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ev Event
			if err := json.Unmarshal([]byte(`{"time":"2022-10-12T00:00:15.064Z","type":"function","record":`+tt.record+`}`), &ev); err != nil {
				t.Fatal(err)
			}
			e, id := recordEntry(&ev, loki.StreamFunction, time.Now())
			if e.Line != tt.wantLine || !e.Time.Equal(tt.wantTime) || e.Level != tt.wantLevel || id != tt.wantID {
				t.Errorf("got line %q time %s level %q request %q", e.Line, e.Time.Format(time.RFC3339Nano), e.Level, id)
			}
		})
	}
}

func TestParseLambdaMillisAgreesWithTimeParse(t *testing.T) {
	for _, s := range []string{"2022-10-12T00:00:15.064Z", "1999-12-31T23:59:59.999Z", "2024-02-29T12:00:00.000Z"} {
		want, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := parseLambdaMillis(s)
		if !ok || !got.Equal(want) {
			t.Errorf("%s: got %v %v, want %v", s, got, ok, want)
		}
	}
	for _, s := range []string{"2022-13-12T00:00:15.064Z", "2022-10-12T00:00:15.06xZ", "2022-10-12 00:00:15.064Z", ""} {
		if _, ok := parseLambdaMillis(s); ok {
			t.Errorf("%q parsed", s)
		}
	}
}

func TestPlatformLines(t *testing.T) {
	i := func(v int64) *int64 { return &v }
	f := func(v float64) *float64 { return &v }
	tests := []struct{ name, got, want string }{
		{"start", startLine(Start{RequestID: "r1", Version: "$LATEST"}), "START RequestId: r1 Version: $LATEST"},
		{"end", endLine(RuntimeDone{RequestID: "r1"}), "END RequestId: r1"},
		{"report cold start", reportLine(Report{RequestID: "r1", Status: "success", Metrics: ReportMetrics{
			DurationMs: 2599.4, BilledDurationMs: i(2600), MemorySizeMB: i(128), MaxMemoryUsedMB: i(94), InitDurationMs: f(549.04)}}),
			"REPORT RequestId: r1\tDuration: 2599.40 ms\tBilled Duration: 2600 ms\tMemory Size: 128 MB\tMax Memory Used: 94 MB\tInit Duration: 549.04 ms"},
		{"report timeout", reportLine(Report{RequestID: "r2", Status: "timeout", ErrorType: "Sandbox.Timeout", Metrics: ReportMetrics{DurationMs: 3000}}),
			"REPORT RequestId: r2\tDuration: 3000.00 ms\tStatus: timeout\tError Type: Sandbox.Timeout"},
		{"timeout", failureLine(RuntimeDone{RequestID: "r2", Status: "timeout", ErrorType: "Sandbox.Timeout", Metrics: RuntimeDoneMetrics{DurationMs: 3000.5}}),
			"Task timed out: RequestId: r2 Status: timeout Error Type: Sandbox.Timeout Duration: 3000.50 ms"},
		{"error", failureLine(RuntimeDone{RequestID: "r3", Status: "error", ErrorType: "Runtime.ExitError"}),
			"Invocation failed: RequestId: r3 Status: error Error Type: Runtime.ExitError"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, tt.got, tt.want)
		}
	}
}
