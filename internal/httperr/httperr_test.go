package httperr

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestCauseDropsTheURL(t *testing.T) {
	refused := errors.New("connection refused")
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"url error", &url.Error{Op: "Post", URL: "https://user:secret@loki.example/push", Err: refused}, refused},
		{"wrapped url error", fmt.Errorf("pushing: %w", &url.Error{Op: "Post", URL: "https://x/?token=t", Err: refused}), refused},
		{"other error", refused, refused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Cause(tt.err)
			if got != tt.want || strings.Contains(got.Error(), "secret") || strings.Contains(got.Error(), "token") {
				t.Fatalf("Cause = %v, want %v", got, tt.want)
			}
		})
	}
}
