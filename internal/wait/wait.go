// Package wait holds the one way the project sleeps: for a while, or until
// a context ends, whichever comes first.
package wait

import (
	"context"
	"time"
)

// Sleep waits for d or until ctx ends, and reports whether d passed. A d of
// zero or less returns at once, true unless ctx has ended.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
