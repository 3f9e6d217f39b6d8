package outbox

import (
	"errors"

	"github.com/lambda-loki/grafana-loki-extension/outbox/spill"
)

// DropReason says why the queue dropped lines. Every drop happens at the
// memory bound (QUEUE_MAX_ENTRIES, QUEUE_MAX_BYTES) while Loki cannot take
// the lines; the reason is why the spill did not take them.
type DropReason int

// The reasons, in the order of Drops.ByReason.
const (
	// DropNoSpill: there is no spill (QUEUE_SPILL_MAX_BYTES=0, or its
	// directory could not be written).
	DropNoSpill DropReason = iota
	// DropSpillFull: the spill is at QUEUE_SPILL_MAX_BYTES or at its share
	// of the free space.
	DropSpillFull
	// DropSpillError: the disk refused the spill's write (ENOSPC when the
	// function filled /tmp, or another error).
	DropSpillError
	// DropUnreadable: spilled lines could not be read back.
	DropUnreadable
	// NumDropReasons is the number of reasons.
	NumDropReasons
)

// Name is the reason as the shutdown summary names its count.
func (r DropReason) Name() string {
	switch r {
	case DropNoSpill:
		return "droppedNoSpill"
	case DropSpillFull:
		return "droppedSpillFull"
	case DropSpillError:
		return "droppedSpillError"
	case DropUnreadable:
		return "droppedUnreadable"
	default:
		return "dropped"
	}
}

// Explain is the reason as the drop's log line gives it.
func (r DropReason) Explain() string {
	switch r {
	case DropNoSpill:
		return "there is no spill file (QUEUE_SPILL_MAX_BYTES=0, or QUEUE_SPILL_DIR not writable)"
	case DropSpillFull:
		return "the spill file is full (QUEUE_SPILL_MAX_BYTES, or a quarter of its file system's free space)"
	case DropSpillError:
		return "the disk refused the spill file's write"
	default:
		return "the spill file could not be read back"
	}
}

// Drops counts what the queue dropped, by reason, and what it moved to the
// spill.
type Drops struct {
	// Dropped entries (and bytes) were thrown away; ByReason adds up to
	// Dropped.
	Dropped, DroppedBytes int
	ByReason              [NumDropReasons]int
	// Spilled entries went to the spill file for the queue's memory bound.
	Spilled int
	// SpillErr is the last error of the spill behind a drop, if any.
	SpillErr error
}

func (d *Drops) add(why DropReason, n, bytes int, err error) {
	if n == 0 {
		return
	}
	d.Dropped += n
	d.DroppedBytes += bytes
	d.ByReason[why] += n
	if err != nil {
		d.SpillErr = err
	}
}

// Add adds up other.
func (d *Drops) Add(other Drops) {
	d.Dropped += other.Dropped
	d.DroppedBytes += other.DroppedBytes
	for i := range d.ByReason {
		d.ByReason[i] += other.ByReason[i]
	}
	d.Spilled += other.Spilled
	if other.SpillErr != nil {
		d.SpillErr = other.SpillErr
	}
}

// dropReason is why the spill refused a write.
func dropReason(err error) DropReason {
	if errors.Is(err, spill.ErrFull) {
		return DropSpillFull
	}
	return DropSpillError
}
