// Package spilltest has a file system for the spill's tests that runs out
// of room on cue, as a /tmp the function fills does: a write the disk
// refuses returns ENOSPC after writing what fitted, as the kernel's does.
package spilltest

import (
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/lambda-loki/grafana-loki-extension/outbox/spill"
)

// Disk is a file system with a fixed room for the spill's files: writes
// past it fail with ENOSPC. Files are real (spill.OS), so reading back
// reads what was written. It is safe for concurrent use.
type Disk struct {
	mu   sync.Mutex
	room int64 // bytes that may still be written
	// claimed, when not negative, is what Free reports instead of room.
	claimed int64
}

// NewDisk returns a disk with room bytes free.
func NewDisk(room int64) *Disk { return &Disk{room: room, claimed: -1} }

// ClaimFree makes Free report free bytes whatever the room: the function
// fills /tmp between the spill's look at the free space and its write.
func (d *Disk) ClaimFree(free int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.claimed = free
}

// SetRoom sets the bytes free from now on: 0 is a full /tmp, a large value
// one the function has cleaned up.
func (d *Disk) SetRoom(room int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.room = room
}

// Room is the bytes free.
func (d *Disk) Room() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.room
}

// Create makes a real file whose writes count against the room.
func (d *Disk) Create(path string) (spill.File, error) {
	d.mu.Lock()
	full := d.room <= 0
	d.mu.Unlock()
	if full {
		return nil, &os.PathError{Op: "open", Path: path, Err: syscall.ENOSPC}
	}
	f, err := spill.OS{}.Create(path)
	if err != nil {
		return nil, err
	}
	return &file{File: f, disk: d}, nil
}

// Free is the room, as statfs would report it, or what ClaimFree says.
func (d *Disk) Free(string) (int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.claimed >= 0 {
		return d.claimed, nil
	}
	return max(d.room, 0), nil
}

type file struct {
	spill.File
	disk *Disk
	size int64
}

func (f *file) Write(b []byte) (int, error) {
	f.disk.mu.Lock()
	n := int64(len(b))
	short := n > f.disk.room
	if short {
		n = max(f.disk.room, 0)
	}
	f.disk.room -= n
	f.disk.mu.Unlock()
	w, err := f.File.Write(b[:n])
	f.size += int64(w)
	if err == nil && short {
		err = &os.PathError{Op: "write", Path: "segment", Err: syscall.ENOSPC}
	}
	return w, err
}

// Truncate gives the room of the bytes cut back to the disk.
func (f *file) Truncate(size int64) error {
	if err := f.File.Truncate(size); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	if size < f.size {
		f.disk.mu.Lock()
		f.disk.room += f.size - size
		f.disk.mu.Unlock()
		f.size = size
	}
	return nil
}
