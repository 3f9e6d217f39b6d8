// Package lokibin gets a real Loki binary for tests and the demo: it builds
// Loki from the Go module proxy once and caches it, since a machine without
// Docker cannot run Loki's image and go install cannot build Loki (its go.mod
// has replace directives, which go install refuses:
// https://go.dev/ref/mod#go-install).
package lokibin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/cacheonce"
	"github.com/lambda-loki/grafana-loki-extension/internal/gobuild"
)

// Version is the Loki release the project tests against.
const Version = "v3.7.8"

// Path is where the binary is expected: $LOKI_BIN, or the cache.
func Path() string {
	if p := os.Getenv("LOKI_BIN"); p != "" {
		return p
	}
	return filepath.Join(cacheDir(), "loki")
}

func cacheDir() string {
	return filepath.Join(gobuild.CacheDir(), "loki-"+Version)
}

// ErrMissing says the binary is not there, and how to get it.
var ErrMissing = errors.New("no Loki binary: run `go tool task loki` (or `go run ./cmd/get-loki`) to build it once, or set LOKI_BIN")

// Find returns the binary's path if it exists and is executable.
func Find() (string, error) {
	p := Path()
	info, err := os.Stat(p)
	if err != nil || !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%w (looked for %s)", ErrMissing, p)
	}
	return p, nil
}

// Ensure returns the binary, building it first if needed. Progress goes to
// progress (a line every 15 s, and the go commands' output). Concurrent
// callers wait for one build.
func Ensure(ctx context.Context, progress io.Writer) (string, error) {
	if p, err := Find(); err == nil {
		return p, nil
	}
	if os.Getenv("LOKI_BIN") != "" {
		return "", fmt.Errorf("LOKI_BIN=%s is not an executable file", os.Getenv("LOKI_BIN"))
	}
	dir := cacheDir()
	ready := func() bool { _, err := Find(); return err == nil }
	if err := cacheonce.Ensure(ctx, filepath.Join(dir, ".lock"), progress, ready, func() error {
		return build(ctx, dir, progress)
	}); err != nil {
		return "", fmt.Errorf("loki cache: %w", err)
	}
	return Find()
}

func build(ctx context.Context, dir string, progress io.Writer) error {
	start := time.Now()
	fmt.Fprintf(progress, "building Loki %s from the Go module proxy into %s (about 4 minutes on 2 cores, once)\n", Version, dir)
	defer cacheonce.Heartbeat(progress, "building Loki")()
	goBin := "go"
	if root := os.Getenv("GOROOT"); root != "" {
		goBin = filepath.Join(root, "bin", "go")
	}
	run := func(workdir string, env []string, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, goBin, args...)
		cmd.Dir = workdir
		cmd.Env = append(os.Environ(), env...)
		cmd.Stderr = progress
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("go %v: %w", args, err)
		}
		return out, nil
	}
	out, err := run(dir, nil, "mod", "download", "-json", "github.com/grafana/loki/v3@"+Version)
	if err != nil {
		return err
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("go mod download gave no module directory: %v", err)
	}
	src := filepath.Join(dir, "src")
	_ = os.RemoveAll(src)
	// The module cache is read-only; build a writable copy.
	if err := exec.CommandContext(ctx, "cp", "-r", mod.Dir, src).Run(); err != nil {
		return fmt.Errorf("copying Loki's source: %w", err)
	}
	if err := exec.CommandContext(ctx, "chmod", "-R", "u+w", src).Run(); err != nil {
		return fmt.Errorf("chmod Loki's source: %w", err)
	}
	// The local ./pkg/push is not in the module zip: use the published one.
	if _, err := run(src, nil, "mod", "edit", "-dropreplace=github.com/grafana/loki/pkg/push"); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "loki.tmp")
	if _, err := run(src, []string{"CGO_ENABLED=0"}, "build", "-mod=mod", "-o", tmp, "./cmd/loki"); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "loki")); err != nil {
		return fmt.Errorf("installing the Loki binary: %w", err)
	}
	_ = os.RemoveAll(src)
	fmt.Fprintf(progress, "built Loki %s in %s\n", Version, time.Since(start).Round(time.Second))
	return nil
}
