// Package lokitest holds the test doubles that tests across the project
// share: a fake Loki that decodes pushes with Loki's own push types, a fake
// pusher for the outbox, and helpers to build and read entries.
package lokitest

import (
	"strconv"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// Lines returns the entries' lines, in order.
func Lines(entries []loki.Entry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Line
	}
	return out
}

// Numbered returns n function entries whose lines are prefix0, prefix1, …
func Numbered(prefix string, n int) []loki.Entry {
	out := make([]loki.Entry, n)
	for i := range out {
		out[i] = loki.Entry{Line: prefix + strconv.Itoa(i)}
	}
	return out
}
