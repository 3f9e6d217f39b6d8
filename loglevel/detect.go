package loglevel

import "strings"

// maxName bounds the level word Detect looks at: "information" is the
// longest spelling Parse knows.
const maxName = len("information")

// Detect finds the level of a text-format line from the prefix the Lambda
// runtimes (or the loggers AWS documents for them) write, and returns
// Unknown for any other line. It looks only at the start of the line and
// stops at the first thing that does not fit, so it costs a few dozen
// nanoseconds whatever the line's length. The prefixes:
//
//   - Python's runtime logger and Java's LambdaLogger with a log level:
//     "[ERROR]\t2024-05-15T23:59:20.159Z\t<request id>\t<message>" and
//     "[ERROR] <message>"
//     (https://docs.aws.amazon.com/lambda/latest/dg/python-logging.html,
//     https://docs.aws.amazon.com/lambda/latest/dg/java-logging.html).
//   - Node.js's console methods and .NET's ILambdaLogger:
//     "2024-05-15T23:59:20.159Z\t<request id>\tERROR\t<message>", with .NET
//     writing trce, dbug, info, warn, fail or crit for the level
//     (https://docs.aws.amazon.com/lambda/latest/dg/nodejs-logging.html,
//     https://docs.aws.amazon.com/lambda/latest/dg/csharp-logging.html).
//     A line written outside an invocation may lack the request ID field.
//   - Java with Log4j2 and the layout AWS documents,
//     "%d{yyyy-MM-dd HH:mm:ss} %X{AWSRequestId} %-5p %c{1} - %m%n":
//     "2024-05-15 23:59:20 <request id> ERROR Handler - <message>"
//     (https://docs.aws.amazon.com/lambda/latest/dg/java-logging.html).
//   - Ruby's Logger: "E, [2024-05-15T23:59:20.159000 #8] ERROR -- : <message>"
//     (https://docs.aws.amazon.com/lambda/latest/dg/ruby-logging.html).
//   - A JSON object written straight to stdout by a structured logger
//     (Powertools for AWS Lambda, pino, structlog, zap...): its top-level
//     "level" or "levelname", a name or a pino/bunyan number, within the
//     line's first 1 KiB (see jsonLine).
//   - A logfmt line, as Go's log/slog text handler (the text format of Go
//     functions, whose runtime adds no prefix) and logrus write them:
//     "time=2024-05-15T23:59:20.159Z level=INFO msg=...", the level key
//     within the line's first 128 bytes (see logfmt).
func Detect(line string) Level {
	if len(line) < 3 {
		return Unknown
	}
	switch c := line[0]; {
	case c == '{':
		return jsonLine(line)
	case c == '[':
		return bracketed(line)
	case c >= '0' && c <= '9':
		return timestamped(line)
	case line[1] == ',':
		return ruby(line)
	case c >= 'a' && c <= 'z':
		return logfmt(line)
	}
	return Unknown
}

// maxLogfmtHead bounds how far logfmt looks for the level key.
const maxLogfmtHead = 128

// logfmt reads the value of a "level=" key of a line whose first word is a
// key=value pair, so that prose that mentions "level=" is not read; the
// value may be quoted.
func logfmt(line string) Level {
	head := line[:min(len(line), maxLogfmtHead)]
	first, _, _ := strings.Cut(head, " ")
	if !strings.Contains(first, "=") {
		return Unknown
	}
	for i := 0; ; {
		j := strings.Index(head[i:], "level=")
		if j < 0 {
			return Unknown
		}
		j += i
		if j == 0 || head[j-1] == ' ' {
			v := line[j+len("level="):]
			v = v[:min(len(v), maxName+2)]
			if strings.HasPrefix(v, `"`) {
				v, _, _ = strings.Cut(v[1:], `"`)
			} else {
				v, _, _ = strings.Cut(v, " ")
			}
			return Parse(v)
		}
		i = j + 1
	}
}

// bracketed reads "[LEVEL]" followed by a tab, a space or the end.
func bracketed(line string) Level {
	end := strings.IndexByte(line[:min(len(line), maxName+2)], ']')
	if end < 0 {
		return Unknown
	}
	if end+1 < len(line) && line[end+1] != '\t' && line[end+1] != ' ' {
		return Unknown
	}
	return Parse(line[1:end])
}

// timestamped reads the lines that begin with a date: tab-separated fields
// (Node.js, .NET) when a tab ends the first field, or Log4j2's
// "yyyy-MM-dd HH:mm:ss" layout when a space follows the date.
func timestamped(line string) Level {
	if len(line) < 11 || line[4] != '-' || line[7] != '-' || !digits(line[:4]) {
		return Unknown
	}
	if line[10] == ' ' {
		return log4j(line)
	}
	tab := strings.IndexByte(line[:min(len(line), 40)], '\t')
	if tab < 0 {
		return Unknown
	}
	// Either "<time>\t<level>\t" (no request) or "<time>\t<request id>\t<level>\t".
	rest := line[tab+1:]
	for range 2 {
		field, ok := word(rest, '\t')
		if !ok {
			return Unknown
		}
		if l := Parse(field); l != Unknown {
			return l
		}
		rest = rest[len(field)+1:]
	}
	return Unknown
}

// log4j reads "yyyy-MM-dd HH:mm:ss[.SSS|,SSS] [<request id>] LEVEL ...".
func log4j(line string) Level {
	if len(line) < 20 || line[13] != ':' || line[16] != ':' || !digits(line[11:13]) || !digits(line[17:19]) {
		return Unknown
	}
	rest := line[19:]
	if len(rest) >= 4 && (rest[0] == '.' || rest[0] == ',') && digits(rest[1:4]) {
		rest = rest[4:]
	}
	if len(rest) == 0 || rest[0] != ' ' {
		return Unknown
	}
	// The request ID is empty outside an invocation, so the level is the
	// first or the second word.
	for range 2 {
		rest = strings.TrimLeft(rest, " ")
		w, ok := word(rest, ' ')
		if !ok {
			return Unknown
		}
		if l := Parse(w); l != Unknown {
			return l
		}
		rest = rest[len(w):]
	}
	return Unknown
}

// ruby reads Logger's default "X, [<time> #<pid>] LEVEL -- <progname>: <message>".
func ruby(line string) Level {
	if !strings.ContainsRune("DIWEFA", rune(line[0])) || !strings.HasPrefix(line[1:], ", [") {
		return Unknown
	}
	end := strings.IndexByte(line[:min(len(line), 64)], ']')
	if end < 0 {
		return Unknown
	}
	rest := strings.TrimLeft(line[end+1:], " ")
	name, _, ok := strings.Cut(rest[:min(len(rest), maxName+4)], " -- ")
	if !ok {
		return Unknown
	}
	return Parse(name)
}

// maxField bounds a field before the level: a request ID is 36 bytes.
const maxField = 64

// word returns the text before the first sep, which must come within
// maxField bytes; ok is false when it does not, so a long line without the
// separator is never scanned to its end.
func word(s string, sep byte) (w string, ok bool) {
	i := strings.IndexByte(s[:min(len(s), maxField+1)], sep)
	if i < 0 {
		return "", false
	}
	return s[:i], true
}

func digits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
