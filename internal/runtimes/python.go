package runtimes

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
)

// The Python function. AWS's Python runtime client (awslambdaric) comes
// from PyPI only, so the function runs under functions/python/bootstrap.py,
// a stand-in for it that prints what Lambda's Python runtime prints (see
// functions/python/README.md).
const (
	pyName    = "telemetry-api-starter-py"
	pyHandler = "handler.handler"
)

// Python stages the Python function in the cache (a copy of its two files:
// there is nothing to build) and returns it: its Command is python3 running
// the bootstrap, its Dir the code directory. A missing python3 is a
// *MissingError.
func Python(ctx context.Context, progress io.Writer) (Function, error) {
	if _, err := exec.LookPath("python3"); err != nil {
		return Function{}, &MissingError{Tool: "python3", Hint: "install Python 3.9 or later (e.g. apt-get install -y python3)"}
	}
	// The interpreter itself rather than what PATH finds: a version
	// manager's shim (pyenv) costs seconds at every start.
	exe, err := exec.CommandContext(ctx, "python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		return Function{}, fmt.Errorf("python3: %w", err)
	}
	python := strings.TrimSpace(string(exe))
	src, err := sourceDir("python")
	if err != nil {
		return Function{}, err
	}
	dir, err := stage(ctx, stageSpec{
		name:     "python",
		src:      src,
		files:    []string{"bootstrap.py", "handler.py"},
		progress: progress,
	})
	if err != nil {
		return Function{}, err
	}
	return Function{
		Name:    pyName,
		Runtime: "python",
		Command: []string{python, filepath.Join(dir, "bootstrap.py")},
		Dir:     dir,
		Handler: pyHandler,
	}, nil
}
