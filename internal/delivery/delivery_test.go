package delivery

import (
	"fmt"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

func TestCompare(t *testing.T) {
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	want := []sandbox.Line{{Time: at, Text: "a"}, {Time: at, Text: "a"}, {Time: at.Add(time.Millisecond), Text: "b"}, {Time: at, Text: "c"}}
	tests := []struct {
		name string
		got  []lokiserver.Line
		want Delivery
	}{
		{"all, repeated lines nanoseconds apart", []lokiserver.Line{{Time: at, Line: "a"}, {Time: at.Add(1), Line: "a"}, {Time: at.Add(time.Millisecond + 5), Line: "b"}, {Time: at, Line: "c"}},
			Delivery{Written: 4, Delivered: 4}},
		{"one missing, one twice", []lokiserver.Line{{Time: at, Line: "a"}, {Time: at.Add(time.Millisecond), Line: "b"}, {Time: at.Add(time.Millisecond), Line: "b"}, {Time: at, Line: "c"}},
			Delivery{Written: 4, Delivered: 3, Missing: 1, Duplicated: 1}},
		{"a wrong time and a stranger", []lokiserver.Line{{Time: at, Line: "a"}, {Time: at, Line: "a"}, {Time: at, Line: "b"}, {Time: at, Line: "c"}, {Time: at, Line: "d"}},
			Delivery{Written: 4, Delivered: 4, WrongTime: 1, Unexpected: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Compare(want, tt.got)
			if fmt.Sprint(d.Written, d.Delivered, d.Missing, d.Duplicated, d.WrongTime, d.Unexpected) !=
				fmt.Sprint(tt.want.Written, tt.want.Delivered, tt.want.Missing, tt.want.Duplicated, tt.want.WrongTime, tt.want.Unexpected) {
				t.Fatalf("got %s, want %s", d, tt.want)
			}
			if whole := d.Delivered == 4 && d.Missing+d.Duplicated+d.WrongTime+d.Unexpected == 0; d.Complete() != whole {
				t.Fatalf("Complete() %v for %s", d.Complete(), d)
			}
			if !d.Complete() && len(d.Examples) == 0 {
				t.Fatalf("no example of what went wrong in %s", d)
			}
		})
	}
}
