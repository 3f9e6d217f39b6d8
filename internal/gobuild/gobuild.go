// Package gobuild builds the project's commands for tests: each package
// once per test process, into a directory of its own that holds only that
// executable (as /opt/extensions holds only extensions).
package gobuild

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
)

// Module is this project's module path; packages are named below it.
const Module = "github.com/lambda-loki/grafana-loki-extension"

type build struct {
	once sync.Once
	path string
	err  error
}

var (
	mu     sync.Mutex
	builds = map[string]*build{}
)

// Binary builds the package with the given import path (inside this module;
// the caller's working directory must be inside it too, as a test's is)
// and returns the executable's path, named after the package's last element.
// Later calls in the same process return the same file.
func Binary(importPath string) (string, error) {
	mu.Lock()
	b := builds[importPath]
	if b == nil {
		b = &build{}
		builds[importPath] = b
	}
	mu.Unlock()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "gobuild-")
		if err != nil {
			b.err = fmt.Errorf("building %s: %w", importPath, err)
			return
		}
		out := filepath.Join(dir, path.Base(importPath))
		if msg, err := exec.Command("go", "build", "-o", out, importPath).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("building %s: %w: %s", importPath, err, msg)
			return
		}
		b.path = out
	})
	return b.path, b.err
}
