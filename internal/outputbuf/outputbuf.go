// Package outputbuf keeps what a child process writes, for a test to read
// while the process is still writing.
package outputbuf

import "sync"

// Buffer keeps the last Max bytes written to it (all of them when Max is
// zero). It is safe for concurrent use.
type Buffer struct {
	// Max bounds what is kept; older bytes are let go.
	Max int

	mu  sync.Mutex
	buf []byte
}

// Write appends p, keeping at most the last Max bytes.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if b.Max > 0 && len(b.buf) > b.Max {
		b.buf = b.buf[len(b.buf)-b.Max:]
	}
	return len(p), nil
}

// String returns what is kept.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
