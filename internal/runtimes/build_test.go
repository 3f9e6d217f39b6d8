package runtimes

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildOrSkip runs a build, skipping the test with the hint when a tool is
// missing, except under CI, where the toolchain is part of the machine.
func buildOrSkip(t *testing.T, build func(context.Context, *testing.T) (Function, error)) Function {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	fn, err := build(ctx, t)
	var missing *MissingError
	switch {
	case errors.As(err, &missing) && os.Getenv("CI") == "":
		t.Skipf("skipping: %v", err)
	case err != nil:
		t.Fatal(err)
	}
	t.Logf("%s ready in %s: %q in %s", fn.Name, time.Since(start).Round(time.Millisecond), fn.Command, fn.Dir)
	return fn
}

func typeScript(ctx context.Context, t *testing.T) (Function, error) {
	return TypeScript(ctx, testWriter{t})
}

func python(ctx context.Context, t *testing.T) (Function, error) {
	return Python(ctx, testWriter{t})
}

// testWriter sends build progress to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestBuilds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(context.Context, *testing.T) (Function, error)
	}{
		{"typescript", typeScript},
		{"python", python},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fn := buildOrSkip(t, tc.build)
			for _, arg := range fn.Command {
				if _, err := os.Stat(arg); filepath.IsAbs(arg) && err != nil {
					t.Errorf("command %q: %v", fn.Command, err)
				}
			}
			if fn.Handler == "" || fn.Dir == "" || fn.Name == "" {
				t.Errorf("incomplete function: %+v", fn)
			}
		})
	}
}
