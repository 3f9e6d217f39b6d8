package retry

import (
	"testing"
	"time"
)

func TestJitterStaysBetweenHalfAndAll(t *testing.T) {
	for _, d := range []time.Duration{0, 1, time.Millisecond, time.Second} {
		seen := map[time.Duration]bool{}
		for range 200 {
			j := Jitter(d)
			if j < d/2 || j > d {
				t.Fatalf("Jitter(%s) = %s, want within [%s, %s]", d, j, d/2, d)
			}
			seen[j] = true
		}
		if d >= time.Millisecond && len(seen) < 10 {
			t.Fatalf("Jitter(%s) took only %d values in 200 draws: not spread", d, len(seen))
		}
	}
}
