package main

import (
	"archive/zip"
	"os"
	"path/filepath"
	"testing"
)

func TestPackKeepsTheExecutableBit(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "grafana-loki-extension")
	if err := os.WriteFile(bin, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "layer.zip")
	if err := pack(out, bin); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.OpenReader(out)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if len(zr.File) != 2 || zr.File[0].Name != "extensions/" || zr.File[1].Name != "extensions/grafana-loki-extension" {
		t.Fatalf("entries %v", zr.File)
	}
	if mode := zr.File[1].Mode(); mode.Perm() != 0o755 || !mode.IsRegular() {
		t.Fatalf("mode %v", mode)
	}
	first, _ := os.ReadFile(out)
	if err := pack(out, bin); err != nil {
		t.Fatal(err)
	}
	if second, _ := os.ReadFile(out); string(first) != string(second) {
		t.Fatal("packing twice gave different zips")
	}
}
