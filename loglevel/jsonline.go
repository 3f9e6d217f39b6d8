package loglevel

// A structured logger that writes JSON straight to stdout (Powertools for
// AWS Lambda, pino, bunyan, structlog, zap, zerolog, logrus, winston)
// produces text-format lines that are JSON objects, with no runtime prefix.
// Their level is a top-level key.

// jsonScanLimit bounds how much of a JSON line is read for its level: the
// loggers above write it among the first keys, and a line whose level comes
// later is shipped as if it had none rather than scanned to its end.
const jsonScanLimit = 1024

// jsonLevelKeys are the top-level keys read as the level: "level" (every
// logger above) and "levelname" (python-json-logger, which keeps the
// logging module's attribute name).
var jsonLevelKeys = [...]string{"level", "levelname"}

// jsonLine reads the level of a line that begins with '{': the value of the
// first top-level level key within the first jsonScanLimit bytes, as
// FromJSON reads it. A key inside a nested object does not count, and a line
// that is not well-formed JSON up to that key is Unknown.
func jsonLine(line string) Level {
	s := line[:min(len(line), jsonScanLimit)]
	i := skipSpace(s, 1)
	for i < len(s) && s[i] == '"' {
		keyEnd, ok := skipString(s, i)
		if !ok {
			return Unknown
		}
		key := s[i+1 : keyEnd-1]
		i = skipSpace(s, keyEnd)
		if i >= len(s) || s[i] != ':' {
			return Unknown
		}
		i = skipSpace(s, i+1)
		end, ok := skipValue(s, i)
		if !ok {
			return Unknown
		}
		for _, k := range jsonLevelKeys {
			if key == k {
				return fromJSONValue(s[i:end])
			}
		}
		i = skipSpace(s, end)
		if i >= len(s) || s[i] != ',' {
			return Unknown
		}
		i = skipSpace(s, i+1)
	}
	return Unknown
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the JSON string that opens at i.
func skipString(s string, i int) (int, bool) {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// skipValue returns the index just past the JSON value that starts at i:
// a string, an object or array (nested to any depth, strings in it
// skipped whole), or a number or literal, which runs to the next
// delimiter. ok is false when the value does not end within s.
func skipValue(s string, i int) (int, bool) {
	if i >= len(s) {
		return 0, false
	}
	switch s[i] {
	case '"':
		return skipString(s, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(s); j++ {
			switch s[j] {
			case '"':
				end, ok := skipString(s, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	}
	for j := i; j < len(s); j++ {
		switch s[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j, j > i
		}
	}
	return 0, false
}
