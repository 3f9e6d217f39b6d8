package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFileSum(t *testing.T) {
	tests := []struct {
		content string
		want    string
	}{
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	}
	for _, tt := range tests {
		name := filepath.Join(t.TempDir(), "f.zip")
		if err := os.WriteFile(name, []byte(tt.content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := fileSum(name)
		if err != nil || got != tt.want {
			t.Errorf("fileSum(%q) = %s, %v; want %s", tt.content, got, err, tt.want)
		}
	}
	if _, err := fileSum(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing file gave no error")
	}
}
