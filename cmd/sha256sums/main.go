// Command sha256sums prints the SHA-256 checksum of each file it is given,
// in the format of coreutils' sha256sum ("<hex>  <name>", the name without
// its directory), so that `sha256sum -c SHA256SUMS` checks a release in the
// folder it was downloaded to. It is written in Go so that a release needs
// nothing but Go (macOS has no sha256sum).
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sha256sums FILE...")
		os.Exit(2)
	}
	for _, name := range os.Args[1:] {
		sum, err := fileSum(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sha256sums:", err)
			os.Exit(1)
		}
		fmt.Printf("%s  %s\n", sum, filepath.Base(name))
	}
}

// fileSum is the hex SHA-256 of a file's content.
func fileSum(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
