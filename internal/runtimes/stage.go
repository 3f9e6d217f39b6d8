package runtimes

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/lambda-loki/grafana-loki-extension/internal/cacheonce"
)

// readyMarker is written last into a staged build: a directory without it
// was never finished and is never used.
const readyMarker = ".ready"

// sourceDir is functions/<name> in this repository, found from this file's
// own path, so that any test package (whatever its working directory) and
// the demo find the same sources.
func sourceDir(name string) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("runtimes: cannot locate the repository's functions directory")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "..", "functions", name)
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("runtimes: the function's sources: %w", err)
	}
	return dir, nil
}

// stageSpec says what one cached build holds and how to make it.
type stageSpec struct {
	name  string   // cache entry prefix, e.g. "typescript"
	src   string   // the function's source directory
	files []string // paths below src to copy and hash (a directory means all its files)
	key   string   // what else the build depends on (a toolchain version)
	// progress hears of a wait for another process's build.
	progress io.Writer
	// build runs in the copied directory; nil means the copy is the build.
	build func(ctx context.Context, dir string) error
}

// stage returns the cache directory holding spec's build, making it first
// if needed: it copies the sources to a directory aside, builds there and
// renames it into place, all under a lock shared with other processes, so
// that concurrent callers build once and never see half a build. The entry
// is named after a hash of the sources and key: a change makes a new one.
func stage(ctx context.Context, spec stageSpec) (string, error) {
	files, err := listFiles(spec.src, spec.files)
	if err != nil {
		return "", err
	}
	sum, err := hashFiles(spec.src, files, spec.key)
	if err != nil {
		return "", err
	}
	root := CacheDir()
	dir := filepath.Join(root, spec.name+"-"+sum)
	ready := func() bool {
		_, err := os.Stat(filepath.Join(dir, readyMarker))
		return err == nil
	}
	err = cacheonce.Ensure(ctx, filepath.Join(root, spec.name+".lock"), spec.progress, ready, func() error {
		// Under the lock no build is running: what is aside was left by a
		// process that was killed halfway.
		stale, _ := filepath.Glob(filepath.Join(root, spec.name+".tmp-*"))
		for _, s := range stale {
			_ = os.RemoveAll(s)
		}
		tmp, err := os.MkdirTemp(root, spec.name+".tmp-")
		if err != nil {
			return fmt.Errorf("staging %s: %w", spec.name, err)
		}
		defer os.RemoveAll(tmp) // gone after the rename; a failed build's leftovers
		if err := copyFiles(spec.src, tmp, files); err != nil {
			return err
		}
		if spec.build != nil {
			if err := spec.build(ctx, tmp); err != nil {
				return err
			}
		}
		if err := os.WriteFile(filepath.Join(tmp, readyMarker), []byte(sum+"\n"), 0o644); err != nil {
			return fmt.Errorf("staging %s: %w", spec.name, err)
		}
		_ = os.RemoveAll(dir) // an unfinished entry from before the marker rule
		if err := os.Rename(tmp, dir); err != nil {
			return fmt.Errorf("staging %s: %w", spec.name, err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return dir, nil
}

// listFiles expands spec's paths into the sorted list of regular files.
func listFiles(src string, paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		err := filepath.WalkDir(filepath.Join(src, p), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				rel, err := filepath.Rel(src, path)
				if err != nil {
					return err
				}
				files = append(files, rel)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("the function's sources: %w", err)
		}
	}
	sort.Strings(files)
	return files, nil
}

// hashFiles is a short hex digest of the files' names and contents and key.
func hashFiles(src string, files []string, key string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "key %q\n", key)
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", fmt.Errorf("hashing the function's sources: %w", err)
		}
		fmt.Fprintf(h, "file %q %d\n", filepath.ToSlash(f), len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

func copyFiles(src, dst string, files []string) error {
	for _, f := range files {
		if err := copyFile(filepath.Join(src, f), filepath.Join(dst, f)); err != nil {
			return fmt.Errorf("copying the function's sources: %w", err)
		}
	}
	return nil
}

func copyFile(from, to string) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// tail is the last n lines of s, for an error that quotes a tool's output.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
