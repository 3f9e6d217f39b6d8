// Package gobuild is the one way the project's tools and tests build Go
// executables (the extension, its test extension, helper commands): the
// `go build` flags that `task build` uses for a layer, and a per-process
// cache for tests.
package gobuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// Module is this project's module path; packages are named below it.
const Module = "github.com/lambda-loki/grafana-loki-extension"

// Options says how to build.
type Options struct {
	// Dir is where go build runs: the module's directory, or a copy of
	// it. Empty is the current directory.
	Dir string
	// Layer builds as `task build` does for a layer: static (CGO off), for
	// Linux, stripped and without local paths.
	Layer bool
	// GOARCH is the target architecture; empty is the host's.
	GOARCH string
	// Version is stamped into main.version when not empty.
	Version string
	// Tags are build tags.
	Tags []string
	// Env is added to the build's environment (KEY=value).
	Env []string
}

// Build builds pkg (an import path, or a path relative to Dir) into out.
// The error holds the compiler's output.
func Build(ctx context.Context, pkg, out string, o Options) error {
	args := []string{"build", "-o", out}
	if len(o.Tags) > 0 {
		args = append(args, "-tags", strings.Join(o.Tags, ","))
	}
	ldflags := ""
	if o.Layer {
		args = append(args, "-trimpath")
		ldflags = "-s -w"
	}
	if o.Version != "" {
		ldflags += " -X main.version=" + o.Version
	}
	if ldflags != "" {
		args = append(args, "-ldflags", ldflags)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, pkg)...)
	cmd.Dir = o.Dir
	cmd.Env = os.Environ()
	if o.Layer {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0", "GOOS=linux")
	}
	if o.GOARCH != "" {
		cmd.Env = append(cmd.Env, "GOARCH="+o.GOARCH)
	}
	cmd.Env = append(cmd.Env, o.Env...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %w: %s", pkg, err, msg)
	}
	return nil
}

type build struct {
	once sync.Once
	path string
	err  error
}

// builds are this process's test builds, by import path: each is built once.
type builds struct {
	mu sync.Mutex
	m  map[string]*build
}

func (bs *builds) get(importPath string) *build {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.m == nil {
		bs.m = map[string]*build{}
	}
	b := bs.m[importPath]
	if b == nil {
		b = &build{}
		bs.m[importPath] = b
	}
	return b
}

// testBuilds is the per-process cache behind Binary. It is state a test
// binary keeps for its life, like the go command's own build cache, and
// holds nothing that differs between callers.
var testBuilds builds

// Binary builds the package with the given import path (inside this module;
// the caller's working directory must be inside it too, as a test's is)
// and returns the executable's path, named after the package's last element,
// in a directory that holds only that executable (as /opt/extensions holds
// only extensions). Later calls in the same process return the same file.
//
// The directory is below the user's cache directory, one per package and
// reused by later runs, so that test runs leave nothing behind in /tmp.
// The binary is built beside it and renamed in, so that concurrent test
// processes never show each other a half-written file or a stray one.
func Binary(importPath string) (string, error) {
	b := testBuilds.get(importPath)
	b.once.Do(func() { b.path, b.err = buildCached(importPath) })
	return b.path, b.err
}

func buildCached(importPath string) (string, error) {
	sum := sha256.Sum256([]byte(importPath))
	root := filepath.Join(CacheDir(), "bin")
	dir := filepath.Join(root, hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("building %s: %w", importPath, err)
	}
	tmp, err := os.CreateTemp(root, ".build-*")
	if err != nil {
		return "", fmt.Errorf("building %s: %w", importPath, err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if err := Build(context.Background(), importPath, tmp.Name(), Options{}); err != nil {
		return "", err
	}
	out := filepath.Join(dir, path.Base(importPath))
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", fmt.Errorf("building %s: %w", importPath, err)
	}
	return out, nil
}

// CacheDir is the project's cache root, shared with the Loki binary and
// the test functions' builds: $XDG_CACHE_HOME, else ~/.cache.
func CacheDir() string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "lambda-loki-extension")
}
