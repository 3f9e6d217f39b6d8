package telemetryApi

import (
	"encoding/json"
	"fmt"
)

// decodeLeniently decodes a batch that is a JSON array but not an array of
// well-formed events: each element that is an object with a string type is
// kept (a time that is not a string is left empty, so the arrival time
// stands in); the others are counted as skipped. err is set only when the
// body is not a JSON array at all.
func decodeLeniently(body []byte) (events []Event, skipped int, err error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
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
