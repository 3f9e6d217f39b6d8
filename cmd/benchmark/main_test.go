package main

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseBench(t *testing.T) {
	out := `goos: linux
BenchmarkPipeline        	     900	   1302345 ns/op	  78.99 MB/s	         4.134 allocs/line	    331891 lines/s	      1302 ns/line	  800804 B/op	    4133 allocs/op
BenchmarkPipeline-2      	     800	   1402345 ns/op	  78.99 MB/s	         4.100 allocs/line	    331891 lines/s	      1402 ns/line	  800804 B/op	    4133 allocs/op
BenchmarkPipelineOther   	     800	   9 ns/op
BenchmarkListener        	     800	   9 ns/op
PASS`
	runs := parseBench(out, "BenchmarkPipeline")
	if len(runs) != 2 {
		t.Fatalf("%d runs, want 2", len(runs))
	}
	if runs[0]["ns/line"] != 1302 || runs[1]["allocs/line"] != 4.1 || runs[0]["allocs/op"] != 4133 {
		t.Fatalf("parsed %v", runs)
	}
}

func TestMedians(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Fatalf("median %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Fatalf("median %v", m)
	}
	if m := median([]time.Duration{5, 1, 3}); m != 3 {
		t.Fatalf("median %v", m)
	}
	if median[float64](nil) != 0 || median[time.Duration](nil) != 0 {
		t.Fatal("median of nothing")
	}
}

func TestSelectScenarios(t *testing.T) {
	all, err := selectScenarios("")
	if err != nil || len(all) != len(scenarios) {
		t.Fatalf("all: %v %v", all, err)
	}
	some, err := selectScenarios("cpu, size")
	if err != nil || len(some) != 2 || !some["cpu"] || !some["size"] {
		t.Fatalf("some: %v %v", some, err)
	}
	if _, err := selectScenarios("cpu,nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown scenario: %v", err)
	}
}

func TestWriteTable(t *testing.T) {
	var buf bytes.Buffer
	writeTable(&buf, []row{{"init", "≤ 10 ms", "4 ms", "yes"}})
	if got := buf.String(); !strings.Contains(got, "metric") || !strings.Contains(got, "init") || !strings.Contains(got, "yes") {
		t.Fatalf("table:\n%s", got)
	}
}

func TestUntarStaysInItsDirectory(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		wantErr bool
	}{
		{"files and directories", map[string]string{"go.mod": "module x\n", "cmd/a/main.go": "package main\n"}, false},
		{"a path out of the directory", map[string]string{"../escape": "x"}, true},
		{"an absolute path", map[string]string{"/etc/escape": "x"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for name, content := range tt.files {
				if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
					t.Fatal(err)
				}
				if _, err := tw.Write([]byte(content)); err != nil {
					t.Fatal(err)
				}
			}
			if err := tw.Close(); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			err := untar(&buf, dir)
			if (err != nil) != tt.wantErr {
				t.Fatalf("untar: %v", err)
			}
			if tt.wantErr {
				return
			}
			for name, content := range tt.files {
				got, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil || string(got) != content {
					t.Fatalf("%s: %q, %v", name, got, err)
				}
			}
		})
	}
}
