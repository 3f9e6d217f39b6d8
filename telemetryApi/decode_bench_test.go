package telemetryApi

import (
	"encoding/json"
	"testing"
	"time"
)

// BenchmarkRecordEntry is one text-format function record turned into an
// entry: its time parsed, its JSON string decoded, its newline dropped.
func BenchmarkRecordEntry(b *testing.B) {
	record, _ := json.Marshal("2026-01-02T03:04:05.000Z\t8f5e4c3a-1b2d-4e6f-9a7b-0c1d2e3f4a5b\tINFO\tline 42 of the benchmark xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n")
	ev := Event{Time: "2026-01-02T03:04:05.000Z", Type: TypeFunction, Record: record}
	received := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if e, _ := recordEntry(&ev, 0, received); e.Line == "" {
			b.Fatal("empty line")
		}
	}
}

// BenchmarkRecordEntryTextObject is a text-format record that is a JSON
// object (a structured logger's own JSON): its request, level and timestamp
// are read from it, which plain text lines do not pay for.
func BenchmarkRecordEntryTextObject(b *testing.B) {
	record, _ := json.Marshal(`{"timestamp":"2026-01-02T03:04:05.000Z","level":"INFO","requestId":"8f5e4c3a-1b2d-4e6f-9a7b-0c1d2e3f4a5b","message":"line 42 of the benchmark"}` + "\n")
	ev := Event{Time: "2026-01-02T03:04:05.000Z", Type: TypeFunction, Record: record}
	received := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, id := recordEntry(&ev, 0, received); id == "" {
			b.Fatal("no request ID")
		}
	}
}
