// Package cacheonce builds an entry of a cache shared by several processes
// (parallel test binaries, the demo) once: the first caller that finds the
// entry missing builds it under an exclusive file lock; the others wait for
// the lock, see the entry ready and reuse it.
package cacheonce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// pollInterval is how often a waiting caller retries the lock; waiting in
// steps rather than in one blocking flock lets the wait end with ctx.
const pollInterval = 200 * time.Millisecond

// Ensure returns nil once ready reports true. If it does not at first,
// Ensure takes an exclusive lock on lockPath (creating its directory), asks
// ready again (another process may have built the entry meanwhile) and, only
// if still not ready, calls build while holding the lock. build should make
// the entry appear atomically (build aside, then rename), so that a crash
// halfway leaves nothing that ready accepts. Waiting for another process's
// build ends with ctx, and is said once on progress.
func Ensure(ctx context.Context, lockPath string, progress io.Writer, ready func() bool, build func() error) error {
	if ready() {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		return fmt.Errorf("cache lock: %w", err)
	}
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("cache lock: %w", err)
	}
	defer lock.Close()
	if err := acquire(ctx, lock, func() {
		fmt.Fprintf(progress, "waiting for another process's build (it holds %s)\n", lockPath)
	}); err != nil {
		return fmt.Errorf("cache lock %s: %w", lockPath, err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()
	if ready() {
		return nil // built by another process while we waited
	}
	return build()
}

// acquire takes the lock, calling waiting once if it has to wait.
func acquire(ctx context.Context, lock *os.File, waiting func()) error {
	for first := true; ; first = false {
		err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return err
		}
		if first {
			waiting()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for another process's build: %w", ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// Heartbeat writes "  still <doing>: <elapsed> elapsed" to progress every
// 15 s until the returned stop is called, so that a build of minutes shows
// it is alive even when its own tools print nothing.
func Heartbeat(progress io.Writer, doing string) (stop func()) {
	start := time.Now()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(15 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(progress, "  still %s: %s elapsed\n", doing, time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(done) }
}
