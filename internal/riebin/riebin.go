// Package riebin builds AWS's Lambda runtime interface emulator (RIE) from
// the Go module proxy once and caches it, so that a test can run the
// extension beside AWS's own code on both sides: RIE's Runtime, Extensions
// and Telemetry APIs and AWS's runtime interface client.
package riebin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/lambda-loki/grafana-loki-extension/internal/cacheonce"
	"github.com/lambda-loki/grafana-loki-extension/internal/gobuild"
)

// Version is the RIE revision the project tests against (the module
// proxy's pseudo-version of its main branch, which includes the Managed
// Instances mode).
const Version = "v0.0.0-20261030222936-bef5c4ba774d"

const pkg = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"

// Path is where the binary is cached.
func Path() string {
	return filepath.Join(gobuild.CacheDir(), "rie-"+Version, "aws-lambda-rie")
}

// Ensure returns the binary's path, building it first if needed; concurrent
// callers wait for one build. progress hears what happens.
func Ensure(ctx context.Context, progress io.Writer) (string, error) {
	path := Path()
	dir := filepath.Dir(path)
	ready := func() bool {
		info, err := os.Stat(path)
		return err == nil && info.Mode().IsRegular()
	}
	err := cacheonce.Ensure(ctx, dir+".lock", progress, ready, func() error {
		fmt.Fprintf(progress, "building AWS's runtime interface emulator %s from the Go module proxy (once)\n", Version)
		tmp, err := os.MkdirTemp(filepath.Dir(dir), ".rie-")
		if err != nil {
			return fmt.Errorf("riebin: %w", err)
		}
		defer os.RemoveAll(tmp)
		// `go install pkg@version` builds a module of its own, outside
		// this one, into GOBIN.
		cmd := exec.CommandContext(ctx, "go", "install", pkg+"@"+Version)
		cmd.Dir = tmp
		cmd.Env = append(os.Environ(), "GOBIN="+tmp, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
		if msg, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("riebin: go install %s: %w: %s", pkg, err, msg)
		}
		_ = os.RemoveAll(dir)
		if err := os.Rename(tmp, dir); err != nil {
			return fmt.Errorf("riebin: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if !ready() {
		return "", errors.New("riebin: the build left no binary")
	}
	return path, nil
}
