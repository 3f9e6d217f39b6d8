// Package retry holds what the project's retry loops share.
package retry

import (
	"math/rand/v2"
	"time"
)

// Jitter spreads a wait between half and all of d, so that many sandboxes
// that failed at the same moment do not retry in step.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}
