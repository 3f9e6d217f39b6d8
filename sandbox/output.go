package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// maxOutputLine is where an extension's output line is cut when it has no
// newline yet, so that one endless line cannot hold memory without bound.
const maxOutputLine = 1 << 20

// output is the pipe that carries one extension's stdout and stderr, as
// Lambda captures both, and the state its reader shares with sync.
type output struct {
	r *os.File
	// syncs hands sync's acknowledgement to the reader, which closes it once
	// it has captured everything the pipe held. One slot: sync sends before
	// it interrupts the reader.
	syncs  chan chan struct{}
	done   chan struct{} // closed when the reader has seen the end of the pipe
	syncMu sync.Mutex    // one sync at a time
}

func newOutput(r *os.File) *output {
	return &output{r: r, syncs: make(chan chan struct{}, 1), done: make(chan struct{})}
}

// sync returns once every byte in the pipe when it was called has been
// captured as lines, or after timeout, or at once when the pipe has ended.
// The freeze calls it: an extension writes its lines before it calls /next,
// so they belong before the freeze, but a pipe hands them over whenever its
// reader gets to them, which may be after the freeze (a flaky SnapStart test
// saw an init line show up at the restore).
func (o *output) sync(timeout time.Duration) {
	o.syncMu.Lock()
	defer o.syncMu.Unlock()
	select {
	case <-o.syncs: // left by a sync that timed out
	default:
	}
	ack := make(chan struct{})
	o.syncs <- ack
	// The reader is blocked in Read; a deadline in the past wakes it.
	if err := o.r.SetReadDeadline(time.Now()); err != nil {
		return
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ack:
	case <-o.done:
	case <-t.C:
	}
}

// capture reads an extension's output line by line into ExtensionOutput and
// the telemetry stream (type "extension"), as Lambda does, until the pipe
// ends; it answers sync between reads.
func (s *Sandbox) capture(e *extension) {
	defer close(e.out.done)
	defer e.out.r.Close()
	buf := make([]byte, 64<<10)
	var partial []byte
	for {
		n, err := e.out.r.Read(buf)
		partial = s.captureLines(e, append(partial, buf[:n]...))
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			partial = s.answerSync(e, buf, partial)
		case err != nil:
			if len(partial) > 0 {
				s.captureLine(e, string(partial))
			}
			return
		}
	}
}

// answerSync captures what the pipe holds now without waiting for more, then
// acknowledges the sync that interrupted the read.
func (s *Sandbox) answerSync(e *extension, buf, partial []byte) []byte {
	var ack chan struct{}
	select {
	case ack = <-e.out.syncs:
	default:
	}
	_ = e.out.r.SetReadDeadline(time.Time{})
	// The pipe holds bytes, so Read returns them at once.
	for pipeBuffered(e.out.r) > 0 {
		n, err := e.out.r.Read(buf)
		partial = s.captureLines(e, append(partial, buf[:n]...))
		if err != nil {
			break
		}
	}
	if ack != nil {
		close(ack)
	}
	return partial
}

// captureLines captures every complete line of data and returns the rest.
func (s *Sandbox) captureLines(e *extension, data []byte) []byte {
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		s.captureLine(e, string(data[:i]))
		data = data[i+1:]
	}
	if len(data) >= maxOutputLine {
		s.captureLine(e, string(data))
		return nil
	}
	return data
}

func (s *Sandbox) captureLine(e *extension, line string) {
	if w := s.cfg.ExtensionOutput; w != nil {
		fmt.Fprintf(w, "[%s] %s\n", e.name, line)
	}
	s.mu.Lock()
	if s.output.Len() < 4<<20 {
		s.output.WriteString(line + "\n")
	}
	s.mu.Unlock()
	s.emit("extension", time.Now(), line+"\n", "")
}
