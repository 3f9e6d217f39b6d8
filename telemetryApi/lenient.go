package telemetryApi

import (
	"encoding/json"
	"errors"
	"fmt"
)

// decodeLeniently decodes a batch that is a JSON array but not an array of
// well-formed events, element by element, so that one element costs no
// more than itself (even one nested deeper than encoding/json allows,
// which would fail any decoding of the whole array): each element that is
// an object with a string type is kept (a time that is not a string is
// left empty, so the arrival time stands in); the others are counted as
// skipped. err is set only when the body is not a JSON array at all.
func decodeLeniently(body []byte) (events []Event, skipped int, err error) {
	raws, err := splitArray(body)
	if err != nil {
		return nil, 0, fmt.Errorf("decoding a telemetry batch: %w", err)
	}
	events = make([]Event, 0, len(raws))
	for _, raw := range raws {
		var ev Event
		if json.Unmarshal(raw, &ev) == nil {
			if ev.Type == "" { // null, or an object that is no event
				skipped++
				continue
			}
			events = append(events, ev)
			continue
		}
		var loose struct {
			Time   json.RawMessage `json:"time"`
			Type   string          `json:"type"`
			Record json.RawMessage `json:"record"`
		}
		if json.Unmarshal(raw, &loose) != nil || loose.Type == "" {
			skipped++
			continue
		}
		ev = Event{Type: loose.Type, Record: loose.Record}
		_ = json.Unmarshal(loose.Time, &ev.Time) // a non-string time stays empty
		events = append(events, ev)
	}
	return events, skipped, nil
}

// splitArray cuts a JSON array into its elements' bytes, without decoding
// them and whatever their depth: it follows only strings (with their
// escapes) and brackets. An element's own syntax is left to its decoding.
func splitArray(body []byte) ([][]byte, error) {
	i := skipSpace(body, 0)
	if i == len(body) || body[i] != '[' {
		return nil, errors.New("not a JSON array")
	}
	var elems [][]byte
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == ']' {
		return elems, trailing(body, i+1)
	}
	for {
		end, err := elementEnd(body, i)
		if err != nil {
			return nil, err
		}
		elems = append(elems, body[i:end])
		i = skipSpace(body, end)
		switch {
		case i == len(body):
			return nil, errors.New("the array is never closed")
		case body[i] == ']':
			return elems, trailing(body, i+1)
		case body[i] == ',':
			i = skipSpace(body, i+1)
		default:
			return nil, fmt.Errorf("unexpected %q after an element", body[i])
		}
	}
}

// elementEnd is where the element starting at i ends: at the first ',' or
// ']' outside strings and brackets.
func elementEnd(body []byte, i int) (int, error) {
	depth, inString, start := 0, false, i
	for ; i < len(body); i++ {
		c := body[i]
		switch {
		case inString && c == '\\':
			i++ // the escaped byte, a quote perhaps
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			depth++
		case c == ']' || c == '}':
			if depth == 0 {
				return elementOrError(body, start, i)
			}
			depth--
		case c == ',' && depth == 0:
			return elementOrError(body, start, i)
		}
	}
	return 0, errors.New("the array is never closed")
}

func elementOrError(body []byte, start, end int) (int, error) {
	if skipSpace(body[:end], start) == end {
		return 0, errors.New("an empty element")
	}
	return end, nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func trailing(body []byte, i int) error {
	if skipSpace(body, i) != len(body) {
		return errors.New("data after the array")
	}
	return nil
}
