package wait

import (
	"context"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want bool
	}{
		{"the time passes", context.Background(), time.Millisecond, true},
		{"nothing to wait for", context.Background(), 0, true},
		{"the context ended first", ended, time.Hour, false},
		{"nothing to wait for, context ended", ended, 0, false},
	}
	for _, tt := range tests {
		if got := Sleep(tt.ctx, tt.d); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
