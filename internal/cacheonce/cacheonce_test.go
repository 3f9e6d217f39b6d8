package cacheonce

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func exists(path string) func() bool {
	return func() bool { _, err := os.Stat(path); return err == nil }
}

// Concurrent callers build once; the others wait and find the entry. Each
// caller opens the lock file itself, as separate processes do, so flock
// keeps them apart within one process too.
func TestEnsureBuildsOnce(t *testing.T) {
	dir := t.TempDir()
	entry := filepath.Join(dir, "entry")
	var builds atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- Ensure(context.Background(), filepath.Join(dir, "sub", ".lock"), io.Discard, exists(entry), func() error {
				builds.Add(1)
				time.Sleep(100 * time.Millisecond) // long enough for the others to queue
				return os.WriteFile(entry, nil, 0o644)
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := builds.Load(); n != 1 {
		t.Errorf("built %d times, want once", n)
	}
}

func TestEnsureCases(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ready    bool
		buildErr error
		wantErr  error
		builds   int32
	}{
		{"ready: no build", true, nil, nil, 0},
		{"missing: build", false, nil, nil, 1},
		{"build fails: its error", false, os.ErrPermission, os.ErrPermission, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var builds atomic.Int32
			err := Ensure(context.Background(), filepath.Join(t.TempDir(), ".lock"), io.Discard, func() bool { return tc.ready }, func() error {
				builds.Add(1)
				return tc.buildErr
			})
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Errorf("Ensure = %v, want %v", err, tc.wantErr)
			}
			if builds.Load() != tc.builds {
				t.Errorf("built %d times, want %d", builds.Load(), tc.builds)
			}
		})
	}
}

// A caller waiting for another's build stops waiting when its context ends.
func TestEnsureWaitEndsWithContext(t *testing.T) {
	lock := filepath.Join(t.TempDir(), ".lock")
	holding, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Ensure(context.Background(), lock, io.Discard, func() bool { return false }, func() error {
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var progress strings.Builder
	err := Ensure(ctx, lock, &progress, func() bool { return false }, func() error {
		t.Error("built while another build held the lock")
		return nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ensure = %v, want the context's deadline", err)
	}
	if n := strings.Count(progress.String(), "waiting for another process's build"); n != 1 {
		t.Errorf("progress %q: want the wait said once", progress.String())
	}
	close(release)
	if err := <-done; err != nil {
		t.Error(err)
	}
}
