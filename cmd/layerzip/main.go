// Command layerzip packs the extension binary into a Lambda layer zip:
// extensions/<name>, executable, so Lambda finds it in /opt/extensions.
// It is written in Go so that building a layer needs nothing but Go.
package main

import (
	"archive/zip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

func main() {
	out := flag.String("o", "", "zip file to write")
	bin := flag.String("bin", "", "extension binary to pack")
	flag.Parse()
	if *out == "" || *bin == "" {
		fmt.Fprintln(os.Stderr, "usage: layerzip -o layer.zip -bin path/to/extension")
		os.Exit(2)
	}
	if err := pack(*out, *bin); err != nil {
		fmt.Fprintln(os.Stderr, "layerzip:", err)
		os.Exit(1)
	}
}

// modTime is fixed so that the same binary always gives the same zip.
var modTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func pack(out, bin string) (err error) {
	src, err := os.Open(bin)
	if err != nil {
		return fmt.Errorf("opening the binary: %w", err)
	}
	defer src.Close()
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	zw := zip.NewWriter(f)
	dir := &zip.FileHeader{Name: "extensions/", Modified: modTime, CreatorVersion: 3 << 8}
	dir.SetMode(os.ModeDir | 0o755)
	if _, err := zw.CreateHeader(dir); err != nil {
		return err
	}
	hdr := &zip.FileHeader{Name: "extensions/" + filepath.Base(bin), Method: zip.Deflate, Modified: modTime, CreatorVersion: 3 << 8}
	hdr.SetMode(0o755) // Lambda runs it: the executable bit must survive
	w, err := zw.CreateHeader(hdr)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, src); err != nil {
		return err
	}
	return zw.Close()
}
