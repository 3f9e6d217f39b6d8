package runtimes

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Go builds functions/go once and then reuses the build, saying which.
func TestGoBuildsOnceThenReusesTheBuild(t *testing.T) {
	if os.Getenv("GOCACHE") == "" {
		// Go's own build cache stays where it is: only ours moves.
		if dir, err := os.UserCacheDir(); err == nil {
			t.Setenv("GOCACHE", filepath.Join(dir, "go-build"))
		}
	}
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	var progress bytes.Buffer
	fn, err := Go(t.Context(), &progress)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(fn.Command[0])
	if err != nil || info.Mode().Perm()&0o111 == 0 {
		t.Fatalf("bootstrap %s: %v %v", fn.Command[0], info, err)
	}
	if fn.Name != GoName || fn.Runtime != "go" || fn.Handler != "bootstrap" || fn.Dir != filepath.Dir(fn.Command[0]) ||
		!strings.HasPrefix(fn.Dir, CacheDir()) || !strings.Contains(progress.String(), "building") {
		t.Fatalf("%+v, progress %q", fn, progress.String())
	}
	progress.Reset()
	again, err := Go(t.Context(), &progress)
	if err != nil || again.Command[0] != fn.Command[0] || !strings.Contains(progress.String(), "cached") {
		t.Fatalf("second call: %+v %v, progress %q", again, err, progress.String())
	}
}

// A staged build is keyed by its sources: any change to a file's content
// or name, or to the key (the target), is a new entry.
func TestStageKey(t *testing.T) {
	write := func(dir, name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := func() string {
		dir := t.TempDir()
		write(dir, "main.go", "package main")
		write(dir, "go.mod", "module x")
		return dir
	}
	hash := func(dir, key string) string {
		t.Helper()
		files, err := listFiles(dir, []string{"."})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := hashFiles(dir, files, key)
		if err != nil {
			t.Fatal(err)
		}
		return sum
	}
	ref := hash(base(), "linux/amd64")
	tests := []struct {
		name   string
		change func(dir string)
		key    string
		same   bool
	}{
		{"the same sources", func(string) {}, "linux/amd64", true},
		{"a file's content", func(dir string) { write(dir, "main.go", "package main // changed") }, "linux/amd64", false},
		{"a new file", func(dir string) { write(dir, "util.go", "package main") }, "linux/amd64", false},
		{"a renamed file", func(dir string) {
			if err := os.Rename(filepath.Join(dir, "main.go"), filepath.Join(dir, "app.go")); err != nil {
				t.Fatal(err)
			}
		}, "linux/amd64", false},
		{"another target", func(string) {}, "linux/arm64", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := base()
			tt.change(dir)
			if got := hash(dir, tt.key); (got == ref) != tt.same {
				t.Fatalf("hash %s, reference %s, want same=%v", got, ref, tt.same)
			}
		})
	}
}
