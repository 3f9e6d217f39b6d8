// Package loglevel is the one place that knows log levels: the names and
// numbers loggers write in JSON records, and the prefixes the Lambda
// runtimes put on text-format lines.
//
// Everything here runs once per log line, so nothing uses a regular
// expression or allocates on the common path.
package loglevel

import (
	"strconv"
	"strings"
)

// Level is a log level, ordered by severity. Unknown sorts below every
// level, but a filter must treat it as "ship it": a line whose level cannot
// be told is never dropped for its level.
type Level uint8

const (
	// Unknown is the zero value: no level, or one this package does not know.
	Unknown Level = iota
	// Trace is the most verbose level.
	Trace
	// Debug is for diagnostics.
	Debug
	// Info is the ordinary level.
	Info
	// Warn is something unexpected that did not fail.
	Warn
	// Error is a failure.
	Error
	// Fatal is a failure that ends the process (CRITICAL in Python and .NET).
	Fatal
)

var names = [...]string{Unknown: "", Trace: "trace", Debug: "debug", Info: "info", Warn: "warn", Error: "error", Fatal: "fatal"}

// String returns the normalised lower-case name (trace, debug, info, warn,
// error, fatal), or "" for Unknown so that callers can omit it.
func (l Level) String() string {
	if int(l) < len(names) {
		return names[l]
	}
	return ""
}

// Parse reads a level name, case-insensitively: TRACE, DEBUG, INFO, WARN,
// ERROR and FATAL, the spellings other loggers use for them (WARNING,
// CRITICAL and PANIC from Python, Go and .NET, INFORMATION from .NET's JSON
// records, and .NET's four-letter text labels trce, dbug, fail and crit),
// and numeric pino/bunyan levels written as a string ("30"). Anything else
// is Unknown.
func Parse(s string) Level {
	switch len(s) {
	case 2:
		return numeric(s)
	case 4:
		switch {
		case strings.EqualFold(s, "info"):
			return Info
		case strings.EqualFold(s, "warn"):
			return Warn
		case strings.EqualFold(s, "dbug"):
			return Debug
		case strings.EqualFold(s, "trce"):
			return Trace
		case strings.EqualFold(s, "fail"):
			return Error
		case strings.EqualFold(s, "crit"):
			return Fatal
		}
	case 5:
		switch {
		case strings.EqualFold(s, "error"):
			return Error
		case strings.EqualFold(s, "debug"):
			return Debug
		case strings.EqualFold(s, "trace"):
			return Trace
		case strings.EqualFold(s, "fatal"):
			return Fatal
		case strings.EqualFold(s, "panic"):
			return Fatal
		}
	case 7:
		if strings.EqualFold(s, "warning") {
			return Warn
		}
	case 8:
		if strings.EqualFold(s, "critical") {
			return Fatal
		}
	case 11:
		if strings.EqualFold(s, "information") {
			return Info
		}
	}
	return Unknown
}

// numeric reads a pino/bunyan level written as a decimal string.
func numeric(s string) Level {
	n, err := strconv.Atoi(s)
	if err != nil {
		return Unknown
	}
	return FromNumber(float64(n))
}

// FromNumber maps a numeric pino or bunyan level: 10 trace, 20 debug,
// 30 info, 40 warn, 50 error, 60 fatal. A custom level between two of them
// counts as the lower one (pino allows any number); anything below 10 is
// Unknown, since no such logger writes it.
//
// See https://getpino.io/#/docs/api?id=levels and
// https://github.com/trentm/node-bunyan#levels.
func FromNumber(n float64) Level {
	switch {
	case n < 10 || n != n: // n != n: NaN
		return Unknown
	case n < 20:
		return Trace
	case n < 30:
		return Debug
	case n < 40:
		return Info
	case n < 50:
		return Warn
	case n < 60:
		return Error
	default:
		return Fatal
	}
}

// FromJSON reads the value of a JSON record's level key as it appears in
// the record: a string holding a name (or a number), or a number. Anything
// else, null included, is Unknown.
func FromJSON(raw []byte) Level {
	// Levels are short: the conversion of a value that does not escape
	// uses a buffer on the stack up to 32 bytes, so it allocates nothing.
	return fromJSONValue(string(raw))
}

// fromJSONValue is FromJSON for a value already held as a string (a slice
// of a text line).
func fromJSONValue(raw string) Level {
	if len(raw) == 0 {
		return Unknown
	}
	switch c := raw[0]; {
	case c == '"':
		s, ok := jsonString(raw)
		if !ok {
			return Unknown
		}
		return Parse(s)
	case c == '-' || c >= '0' && c <= '9':
		n, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return Unknown
		}
		return FromNumber(n)
	}
	return Unknown
}

// jsonString returns the text of a JSON string literal that has no escapes;
// level names never need them, so one that has them is not a level.
func jsonString(raw string) (string, bool) {
	if len(raw) < 2 || raw[len(raw)-1] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if strings.ContainsAny(inner, `\"`) {
		return "", false
	}
	return inner, true
}
