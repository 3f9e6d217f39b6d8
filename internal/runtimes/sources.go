package runtimes

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
)

// functionsDir is the source folder of one test function, functions/<name>
// at the repository's root, found from this file's own location: the
// builds run from tests and tools inside the repository.
func functionsDir(name string) (string, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("runtimes: cannot locate the repository")
	}
	dir := filepath.Join(filepath.Dir(self), "..", "..", "functions", name)
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("runtimes: the %s function's sources: %w", name, err)
	}
	return filepath.Clean(dir), nil
}

// hashTree is a hex SHA-256 of every regular file below dir (its path
// relative to dir and its content), skipping the folders named in skip
// (build outputs, installed dependencies), plus the extra strings given
// (a target platform, say). It keys a cached build on its sources.
func hashTree(dir string, skip []string, extra ...string) (string, error) {
	h := sha256.New()
	for _, s := range extra {
		fmt.Fprintf(h, "extra %q\n", s)
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && slices.Contains(skip, d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(h, "file %q\n", filepath.ToSlash(rel))
		_, err = io.Copy(h, f)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("runtimes: hashing %s: %w", dir, err)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
