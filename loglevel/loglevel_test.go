package loglevel

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want Level
	}{
		{"TRACE", Trace}, {"trace", Trace}, {"trce", Trace},
		{"DEBUG", Debug}, {"Debug", Debug}, {"dbug", Debug},
		{"INFO", Info}, {"info", Info}, {"Information", Info},
		{"WARN", Warn}, {"warning", Warn}, {"WARNING", Warn},
		{"ERROR", Error}, {"error", Error}, {"fail", Error},
		{"FATAL", Fatal}, {"CRITICAL", Fatal}, {"crit", Fatal}, {"panic", Fatal},
		{"10", Trace}, {"20", Debug}, {"30", Info}, {"40", Warn}, {"50", Error}, {"60", Fatal},
		{"", Unknown}, {"NOTICE", Unknown}, {"INFOS", Unknown}, {" INFO", Unknown}, {"info ", Unknown},
		{"5", Unknown}, {"0x", Unknown}, {"100", Unknown},
	}
	for _, tt := range tests {
		if got := Parse(tt.in); got != tt.want {
			t.Errorf("Parse(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestStringIsTheNormalisedName(t *testing.T) {
	want := map[Level]string{Unknown: "", Trace: "trace", Debug: "debug", Info: "info", Warn: "warn", Error: "error", Fatal: "fatal", Fatal + 1: ""}
	for l, name := range want {
		if l.String() != name {
			t.Errorf("Level(%d).String() = %q, want %q", l, l.String(), name)
		}
		if name != "" && Parse(name) != l {
			t.Errorf("Parse(%q) = %d, want %d", name, Parse(name), l)
		}
	}
	if !(Trace < Debug && Debug < Info && Info < Warn && Warn < Error && Error < Fatal) {
		t.Error("levels are not ordered by severity")
	}
}

func TestFromNumber(t *testing.T) {
	tests := []struct {
		in   float64
		want Level
	}{
		{10, Trace}, {20, Debug}, {30, Info}, {40, Warn}, {50, Error}, {60, Fatal},
		{35, Info}, {59.9, Error}, {70, Fatal}, {9.99, Unknown}, {0, Unknown}, {-30, Unknown},
	}
	for _, tt := range tests {
		if got := FromNumber(tt.in); got != tt.want {
			t.Errorf("FromNumber(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFromJSON(t *testing.T) {
	tests := []struct {
		raw  string
		want Level
	}{
		{`"ERROR"`, Error}, {`"warning"`, Warn}, {`"Information"`, Info}, {`"50"`, Error},
		{`30`, Info}, {`50`, Error}, {`60`, Fatal}, {`4e1`, Warn}, {`20.0`, Debug},
		{`"NOTICE"`, Unknown}, {`"ERR\u004fR"`, Unknown}, {`null`, Unknown}, {`true`, Unknown},
		{`{"name":"error"}`, Unknown}, {`["error"]`, Unknown}, {``, Unknown}, {`"`, Unknown}, {`-`, Unknown},
	}
	for _, tt := range tests {
		if got := FromJSON([]byte(tt.raw)); got != tt.want {
			t.Errorf("FromJSON(%s) = %q, want %q", tt.raw, got, tt.want)
		}
	}
}

func TestDetect(t *testing.T) {
	const id = "8f5e4c3a-1b2d-4e6f-9a7b-0c1d2e3f4a5b"
	tests := []struct {
		name string
		line string
		want Level
	}{
		{"Python", "[ERROR]\t2024-05-15T23:59:20.159Z\t" + id + "\tboom", Error},
		{"Python warning", "[WARNING]\t2024-05-15T23:59:20.159Z\t" + id + "\tcareful", Warn},
		{"Python critical", "[CRITICAL]\t2024-05-15T23:59:20.159Z\t" + id + "\tdown", Fatal},
		{"Python debug", "[DEBUG]\t2024-05-15T23:59:20.159Z\t" + id + "\tdetail", Debug},
		{"Java LambdaLogger", "[INFO] order 42 shipped", Info},
		{"Java LambdaLogger, level only", "[FATAL]", Fatal},
		{"Node", "2024-05-15T23:59:20.159Z\t" + id + "\tWARN\twarn from console", Warn},
		{"Node error", "2024-05-15T23:59:20.159Z\t" + id + "\tERROR\tInvoke Error", Error},
		{"Node trace", "2024-05-15T23:59:20.159Z\t" + id + "\tTRACE\tTrace: x", Trace},
		{"Node outside an invocation", "2024-05-15T23:59:20.159Z\tundefined\tINFO\tloading", Info},
		{"no request ID field", "2024-05-15T23:59:20.159Z\tDEBUG\tloading", Debug},
		{".NET fail", "2024-05-15T23:59:20.159Z\t" + id + "\tfail\tthe order failed", Error},
		{".NET crit", "2024-05-15T23:59:20.159Z\t" + id + "\tcrit\tout of memory", Fatal},
		{".NET dbug", "2024-05-15T23:59:20.159Z\t" + id + "\tdbug\tdetail", Debug},
		{".NET without a level", "2024-05-15T23:59:20.159Z\t" + id + "\tjust a message", Unknown},
		{"Log4j2", "2024-05-15 23:59:20 " + id + " ERROR Handler:42 - boom", Error},
		{"Log4j2 padded level", "2024-05-15 23:59:20 " + id + " INFO  Handler:42 - hello", Info},
		{"Log4j2 with milliseconds", "2024-05-15 23:59:20.159 " + id + " WARN  Handler - hm", Warn},
		{"Log4j2 outside an invocation", "2024-05-15 23:59:20  DEBUG Handler - init", Debug},
		{"Ruby", "E, [2024-05-15T23:59:20.159000 #8] ERROR -- : boom", Error},
		{"Ruby info, padded", "I, [2024-05-15T23:59:20.159000 #8]  INFO -- : hello", Info},
		{"Ruby ANY", "A, [2024-05-15T23:59:20.159000 #8]   ANY -- : hm", Unknown},

		{"Go slog text", "time=2024-05-15T23:59:20.159Z level=WARN msg=\"warn line\" requestId=" + id, Warn},
		{"Go slog text, renamed keys", "timestamp=2024-05-15T23:59:20.159Z level=DEBUG message=\"debug line\"", Debug},
		{"logrus text, quoted", `time="2024-05-15T23:59:20Z" level="error" msg="boom"`, Error},
		{"logfmt, level first", "level=info msg=x", Info},
		{"logfmt, level at the end", "msg=x level=fatal", Fatal},
		{"logfmt, a key ending in level", "time=x loglevel=error msg=y", Unknown},
		{"logfmt, unknown level", "time=x level=INFO+2 msg=y", Unknown},
		{"prose that mentions level=", "set level=error now", Unknown},
		{"logfmt, level past 128 bytes", "msg=" + strings.Repeat("x", 130) + " level=error", Unknown},
		{"plain print", "hello world", Unknown},
		{"empty", "", Unknown},
		{"message that mentions a level", "an ERROR happened", Unknown},
		{"bracket not followed by a separator", "[ERROR]boom", Unknown},
		{"unknown bracketed word", "[NOTICE] x", Unknown},
		{"bracket never closed", "[" + strings.Repeat("E", 100), Unknown},
		{"Powertools JSON", `{"level":"DEBUG","location":"handler:12","message":"x","timestamp":"2024-05-15 23:59:20,159+0000"}`, Debug},
		{"pino JSON, numeric", `{"level":50,"time":1715817560159,"pid":8,"msg":"boom"}`, Error},
		{"logrus JSON, level later", `{"a":1,"b":[1,{"level":"fatal"}],"c":{"d":"}"},"level":"warning","msg":"x"}`, Warn},
		{"structlog JSON, spaces", `{ "event" : "x" , "level" : "info" }`, Info},
		{"python-json-logger", `{"message": "x", "levelname": "ERROR"}`, Error},
		{"escaped quote before the level", `{"msg":"say \"hi\"","level":"error"}`, Error},
		{"level only in a nested object", `{"ctx":{"level":"error"},"msg":"x"}`, Unknown},
		{"level key with another value", `{"level":{"n":50}}`, Unknown},
		{"level name unknown", `{"level":"notice"}`, Unknown},
		{"JSON without a level", `{"msg":"error"}`, Unknown},
		{"level past the first KiB", `{"msg":"` + strings.Repeat("x", 1100) + `","level":"error"}`, Unknown},
		{"broken JSON", `{"msg" "x","level":"error"}`, Unknown},
		{"not JSON after the brace", `{level: error}`, Unknown},
		{"string never closed", `{"msg":"` + strings.Repeat("x", 100), Unknown},
		{"number that is not a date", "12345 items\tERROR\tx", Unknown},
		{"date without tabs", "2024-05-15T23:59:20.159Z ERROR x", Unknown},
		{"level word is the message", "2024-05-15T23:59:20.159Z\t" + id + "\terror", Unknown},
		{"long first field", "2024-05-15T23:59:20.159Z" + strings.Repeat("x", 100) + "\tERROR\tx", Unknown},
		{"Log4j2 bad time", "2024-05-15 2x:59:20 " + id + " ERROR Handler - x", Unknown},
		{"Log4j2 message word", "2024-05-15 23:59:20 " + id + " Handler ERROR - x", Unknown},
		{"Ruby lookalike", "I, [nothing closes here " + strings.Repeat("x", 80), Unknown},
		{"Ruby without the dashes", "E, [2024-05-15T23:59:20.159000 #8] ERROR boom", Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Detect(tt.line); got != tt.want {
				t.Errorf("Detect(%q) = %q, want %q", tt.line, got, tt.want)
			}
		})
	}
}

// Detect runs for every line when LOKI_MIN_LEVEL is set: it must not
// allocate, and must not scan a long line that has no prefix to its end.
func TestDetectDoesNotAllocate(t *testing.T) {
	lines := []string{
		"2024-05-15T23:59:20.159Z\t8f5e4c3a-1b2d-4e6f-9a7b-0c1d2e3f4a5b\tWARN\twarn from console",
		"[ERROR]\t2024-05-15T23:59:20.159Z\t8f5e4c3a\tboom",
		"2024-05-15 23:59:20 8f5e4c3a INFO  Handler - x",
		strings.Repeat("x", 10_000),
		`{"level":"DEBUG","location":"handler:12","message":"x"}`,
		`{"level":30,"time":1715817560159,"msg":"x"}`,
		"time=2024-05-15T23:59:20.159Z level=WARN msg=x",
		"msg=" + strings.Repeat("x", 10_000),
		`{"msg":"` + strings.Repeat("x", 10_000) + `","level":"error"}`,
	}
	for _, line := range lines {
		if n := testing.AllocsPerRun(100, func() { Detect(line) }); n != 0 {
			t.Errorf("Detect(%.40q…) allocates %v times", line, n)
		}
	}
}

func BenchmarkDetectJSON(b *testing.B) {
	line := `{"level":"INFO","location":"handler:12","message":"line 1 of 8f5e4c3a","timestamp":"2024-05-15 23:59:20,159+0000"}`
	for b.Loop() {
		if Detect(line) != Info {
			b.Fatal("not info")
		}
	}
}

func BenchmarkDetect(b *testing.B) {
	line := "2024-05-15T23:59:20.159Z\t8f5e4c3a-1b2d-4e6f-9a7b-0c1d2e3f4a5b\tINFO\tline 1 of 8f5e4c3a " + strings.Repeat("x", 60)
	for b.Loop() {
		if Detect(line) != Info {
			b.Fatal("not info")
		}
	}
}

// Detect reads any line the function writes: whatever the bytes, it
// returns and never reads past them. The seeds run in every go test; go test
// -fuzz FuzzDetect ./loglevel searches further.
func FuzzDetect(f *testing.F) {
	for _, seed := range []string{
		`{"level":"info"}`, `{"a":{"b":[1,"\"",{"c":"}"}]},"level":50}`, `{"level`, `{"\`, `{"a":"\`,
		`{"a":[`, `{"a":tru`, `{ "level" : `, "[ERROR]\tx", "2024-05-15T23:59:20.159Z\tx\tINFO\t", "E, [x] ERROR -- : y",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if l := Detect(line); l > Fatal {
			t.Fatalf("Detect(%q) = %d, not a level", line, l)
		}
	})
}
