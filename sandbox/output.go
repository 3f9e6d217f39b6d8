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

// output is a pipe the emulator captures (an extension's stdout and stderr,
// as Lambda captures both; the runtime's, and its telemetry log fd), and the
// state its reader shares with sync.
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
	e.out.read(func(data []byte, atEOF bool) []byte {
		return splitLines(data, atEOF, func(line []byte) { s.captureLine(e, string(line)) })
	})
}

// read hands what the pipe carries to split, which consumes what it can
// (whole lines, whole frames) and returns the rest, until the pipe ends
// (then atEOF is set); it answers sync between reads.
func (o *output) read(split func(data []byte, atEOF bool) []byte) {
	defer close(o.done)
	defer o.r.Close()
	buf := make([]byte, 64<<10)
	var partial []byte
	for {
		n, err := o.r.Read(buf)
		partial = split(append(partial, buf[:n]...), false)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			partial = o.answerSync(buf, partial, split)
		case err != nil:
			if len(partial) > 0 {
				split(partial, true)
			}
			return
		}
	}
}

// answerSync captures what the pipe holds now without waiting for more, then
// acknowledges the sync that interrupted the read.
func (o *output) answerSync(buf, partial []byte, split func([]byte, bool) []byte) []byte {
	var ack chan struct{}
	select {
	case ack = <-o.syncs:
	default:
	}
	_ = o.r.SetReadDeadline(time.Time{})
	// The pipe holds bytes, so Read returns them at once.
	for pipeBuffered(o.r) > 0 {
		n, err := o.r.Read(buf)
		partial = split(append(partial, buf[:n]...), false)
		if err != nil {
			break
		}
	}
	if ack != nil {
		close(ack)
	}
	return partial
}

// splitLines hands every complete line of data to line and returns the
// rest; at the end of the pipe, or past maxOutputLine, the rest is a line
// too.
func splitLines(data []byte, atEOF bool, line func([]byte)) []byte {
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		line(data[:i])
		data = data[i+1:]
	}
	if len(data) >= maxOutputLine || atEOF && len(data) > 0 {
		line(data)
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
