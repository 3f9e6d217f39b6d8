package runtimes

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/lambda-loki/grafana-loki-extension/internal/gobuild"
)

// GoName is the Go test function's name, as in the article.
const GoName = "telemetry-api-starter-go"

// Go builds the Go test function (functions/go) as the bootstrap of an
// OS-only runtime (provided.al2023: linux, no cgo, tag lambda.norpc), once
// per version of its sources and target: the build is staged in CacheDir
// like the other functions' and reused. progress gets a line about what
// happens (may be nil). Without a go command on PATH the error wraps
// ErrToolchainMissing.
func Go(ctx context.Context, progress io.Writer) (Function, error) {
	if progress == nil {
		progress = io.Discard
	}
	src, err := sourceDir("go")
	if err != nil {
		return Function{}, err
	}
	if _, err := exec.LookPath("go"); err != nil {
		return Function{}, &MissingError{Tool: "go", Hint: "install Go from https://go.dev/dl/ and put it on PATH"}
	}
	built := false
	dir, err := stage(ctx, stageSpec{
		name: "go", src: src, files: []string{"."}, key: "linux/" + runtime.GOARCH, progress: progress,
		build: func(ctx context.Context, dir string) error {
			built = true
			fmt.Fprintf(progress, "%s: building %s\n", GoName, src)
			return buildGo(ctx, dir)
		},
	})
	if err != nil {
		return Function{}, err
	}
	if !built {
		fmt.Fprintf(progress, "%s: cached build %s\n", GoName, dir)
	}
	return Function{Name: GoName, Runtime: "go", Command: []string{filepath.Join(dir, "bootstrap")}, Dir: dir, Handler: "bootstrap"}, nil
}

// buildGo builds the main package in dir (a copy of the function's module)
// into dir/bootstrap, as a layer is built: static, for Linux, stripped.
func buildGo(ctx context.Context, dir string) error {
	// The function is a module of its own, built for Lambda's OS whatever
	// the machine's defaults.
	err := gobuild.Build(ctx, ".", "bootstrap", gobuild.Options{
		Dir: dir, Layer: true, GOARCH: runtime.GOARCH, Tags: []string{"lambda.norpc"}, Env: []string{"GOWORK=off", "GOFLAGS=-mod=readonly"},
	})
	if err != nil {
		return fmt.Errorf("runtimes: %s: %w", GoName, err)
	}
	return nil
}
