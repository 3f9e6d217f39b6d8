// Package delivery compares the lines a function wrote in the sandbox
// emulator with the lines a real Loki holds. The end-to-end tests and the
// benchmark both judge delivery with it, so "every line, once, with its
// own time" means the same in both; it does not import testing.
package delivery

import (
	"context"
	"fmt"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// Delivery compares the lines a function wrote with the lines Loki holds.
type Delivery struct {
	Written, Delivered, Missing, Duplicated, WrongTime, Unexpected int
	// Examples of what went wrong, for the failure message.
	Examples []string
}

// Complete reports whether every line arrived once with its own timestamp.
func (d Delivery) Complete() bool {
	return d.Delivered == d.Written && d.Missing == 0 && d.Duplicated == 0 && d.WrongTime == 0 && d.Unexpected == 0
}

func (d Delivery) String() string {
	return fmt.Sprintf("written %d, delivered %d, missing %d, duplicated %d, wrong time %d, unexpected %d %q",
		d.Written, d.Delivered, d.Missing, d.Duplicated, d.WrongTime, d.Unexpected, d.Examples)
}

// Selector is the LogQL selector of a function's own lines: platform and
// extension lines, on their own type="…" streams, are not among them.
func Selector(function string) string { return fmt.Sprintf(`{function=%q, type=""}`, function) }

// Check reads the function's own stream since start and compares it with
// want.
func Check(ctx context.Context, srv *lokiserver.Server, function string, want []sandbox.Line, since time.Time) (Delivery, error) {
	got, err := srv.Query(ctx, lokiserver.Query{LogQL: Selector(function), Start: since.Add(-time.Minute), End: time.Now().Add(time.Minute)})
	if err != nil {
		return Delivery{}, err
	}
	return Compare(want, got), nil
}

// Stored counts the function's own lines in Loki over the last hour with
// one metric query: reading 200 000 lines back to count them would take
// longer than writing them.
func Stored(ctx context.Context, srv *lokiserver.Server, function string) (int, error) {
	samples, err := srv.Instant(ctx, fmt.Sprintf(`sum(count_over_time(%s[1h]))`, Selector(function)), time.Now(), "")
	if err != nil || len(samples) == 0 {
		return 0, err
	}
	return int(samples[0].Value), nil
}

// SameMillisecond reports whether a stored timestamp is the time the line
// was written: Lambda stamps events to the millisecond, and the extension
// moves a line by a few nanoseconds inside its millisecond only to keep
// repeated lines apart (Loki stores one of several identical entries).
func SameMillisecond(stored, written time.Time) bool {
	return stored.Truncate(time.Millisecond).Equal(written.Truncate(time.Millisecond))
}

// Compare matches written lines with Loki's lines by text.
func Compare(want []sandbox.Line, got []lokiserver.Line) Delivery {
	d := Delivery{Written: len(want)}
	type found struct {
		times []time.Time
	}
	byText := map[string]*found{}
	for _, g := range got {
		f := byText[g.Line]
		if f == nil {
			f = &found{}
			byText[g.Line] = f
		}
		f.times = append(f.times, g.Time)
	}
	example := func(format string, args ...any) {
		if len(d.Examples) < 3 {
			s := fmt.Sprintf(format, args...)
			if len(s) > 160 {
				s = s[:160] + "…"
			}
			d.Examples = append(d.Examples, s)
		}
	}
	wanted := map[string]int{}
	for _, w := range want {
		wanted[w.Text]++
	}
	for _, w := range want {
		f := byText[w.Text]
		if f == nil || len(f.times) == 0 {
			d.Missing++
			example("missing %q", w.Text)
			continue
		}
		d.Delivered++
		t := f.times[0]
		f.times = f.times[1:]
		if !SameMillisecond(t, w.Time) {
			d.WrongTime++
			example("%q at %s, written at %s", w.Text, t.Format(time.RFC3339Nano), w.Time.Format(time.RFC3339Nano))
		}
	}
	for text, f := range byText {
		if wanted[text] > 0 {
			d.Duplicated += len(f.times)
			if len(f.times) > 0 {
				example("duplicated %q", text)
			}
		} else {
			d.Unexpected += len(f.times)
			example("unexpected %q", text)
		}
	}
	return d
}
