package runtimes

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// GoName is the Go test function's name, as in the article.
const GoName = "telemetry-api-starter-go"

// Go builds the Go test function (functions/go) as the bootstrap of an
// OS-only runtime (provided.al2023: linux, no cgo, tag lambda.norpc), once
// per version of its sources: the build is cached in CacheDir, keyed by a
// hash of them, and reused. progress gets a line about what happens (may
// be nil). Without a go command on PATH the error wraps
// ErrToolchainMissing.
func Go(ctx context.Context, progress io.Writer) (Function, error) {
	if progress == nil {
		progress = io.Discard
	}
	src, err := functionsDir("go")
	if err != nil {
		return Function{}, err
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return Function{}, &MissingError{Tool: "go", Hint: "install Go from https://go.dev/dl/ and put it on PATH"}
	}
	key, err := hashTree(src, nil, "linux/"+runtime.GOARCH)
	if err != nil {
		return Function{}, err
	}
	dir := filepath.Join(CacheDir(), "go-"+key)
	fn := Function{Name: GoName, Runtime: "go", Command: []string{filepath.Join(dir, "bootstrap")}, Dir: dir, Handler: "bootstrap"}
	if _, err := os.Stat(fn.Command[0]); err == nil {
		fmt.Fprintf(progress, "%s: cached build %s\n", GoName, dir)
		return fn, nil
	}
	fmt.Fprintf(progress, "%s: building %s into %s\n", GoName, src, dir)
	if err := buildGo(ctx, goCmd, src, dir); err != nil {
		return Function{}, err
	}
	return fn, nil
}

// buildGo builds src's main package into dir/bootstrap: in a folder of its
// own first, renamed into place, so that a build cut short or a concurrent
// one never leaves a partial binary under the cache key.
func buildGo(ctx context.Context, goCmd, src, dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("runtimes: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".go-build-")
	if err != nil {
		return fmt.Errorf("runtimes: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, goCmd, "build", "-tags", "lambda.norpc", "-trimpath", "-o", filepath.Join(tmp, "bootstrap"), ".")
	cmd.Dir = src
	// The function is a module of its own, built for Lambda's OS whatever
	// the machine's defaults.
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+runtime.GOARCH, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("runtimes: building %s: %w: %s", GoName, err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, "bootstrap")); statErr == nil {
			return nil // built meanwhile by another process
		}
		return fmt.Errorf("runtimes: %w", err)
	}
	return nil
}
