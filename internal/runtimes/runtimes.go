// Package runtimes builds the test functions in functions/ (the Go,
// TypeScript and Python functions of the project's end-to-end tests and
// demo) once, caches the builds, and says how the sandbox emulator runs each
// as a real runtime process: the command Lambda would start as the runtime,
// its working directory (LAMBDA_TASK_ROOT) and its handler (_HANDLER).
package runtimes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/lambda-loki/grafana-loki-extension/internal/gobuild"
)

// Function is one built test function, ready to run as the runtime process
// of an emulated sandbox.
type Function struct {
	// Name is the function's name, as in the article and the CDK app
	// (telemetry-api-starter-go, -ts, -py).
	Name string
	// Runtime names the language runtime: "go", "nodejs" or "python".
	Runtime string
	// Command is the runtime process's argv: what Lambda starts as the
	// runtime (a bootstrap, or a runtime client command).
	Command []string
	// Dir is the function's code directory: the process's working
	// directory and LAMBDA_TASK_ROOT.
	Dir string
	// Handler is the function's handler setting (_HANDLER).
	Handler string
	// Env holds extra variables the runtime needs (KEY=value), beside the
	// ones the emulator sets as Lambda does.
	Env []string
}

// Language is one of the test functions: its language's name and how to
// build it.
type Language struct {
	Name  string
	Build func(ctx context.Context, progress io.Writer) (Function, error)
}

// Languages are the article's three test functions, in the order the demo
// and the end-to-end tests run them.
func Languages() []Language {
	return []Language{{"go", Go}, {"typescript", TypeScript}, {"python", Python}}
}

// ErrToolchainMissing is wrapped by the errors of a build that cannot run on
// this machine because a tool is missing; tests skip on it (and fail when CI
// is set), saying how to get the tool.
var ErrToolchainMissing = errors.New("toolchain missing")

// MissingError says which tool is missing and how to get it.
type MissingError struct {
	Tool string // the command looked for, e.g. "node"
	Hint string // how to install it
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("%s not found: %s", e.Tool, e.Hint)
}

// Unwrap makes errors.Is(err, ErrToolchainMissing) hold.
func (e *MissingError) Unwrap() error { return ErrToolchainMissing }

// CacheDir is where builds are cached, below the project's cache root
// beside the Loki binary.
func CacheDir() string {
	return filepath.Join(gobuild.CacheDir(), "functions")
}
