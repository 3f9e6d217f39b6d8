package main

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/gobuild"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokibin"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
)

// extensionName is the file name of the extension in the layer.
const extensionName = "grafana-loki-extension"

// archs are the architectures Lambda runs and the layer is built for.
var archs = []string{"amd64", "arm64"}

// bench holds what the scenarios share: the module, the builds, the Loki,
// and the rows measured so far.
type bench struct {
	opts     options
	progress io.Writer
	root     string // the module's directory
	work     string // builds and layer zips
	ownWork  bool   // work is temporary and removed at the end
	machine  string
	rows     []row

	built map[string]bool // binaries built so far
	loki  *lokiserver.Server
}

// row is one line of the table. met is "yes", "NO", or "–" for a figure
// without a target.
type row struct {
	metric, target, measured, met string
}

func newBench(ctx context.Context, opts options, progress io.Writer) (*bench, error) {
	b := &bench{opts: opts, progress: progress, built: map[string]bool{}}
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return nil, fmt.Errorf("run it inside the module (go env GOMOD found none): %v", err)
	}
	b.root = filepath.Dir(strings.TrimSpace(string(out)))
	b.work = opts.workDir
	if b.work == "" {
		if b.work, err = os.MkdirTemp("", "loki-extension-bench-"); err != nil {
			return nil, fmt.Errorf("work directory: %w", err)
		}
		b.ownWork = true
	} else if err := os.MkdirAll(b.work, 0o755); err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	b.machine = machine(ctx)
	return b, nil
}

func (b *bench) close() {
	if b.loki != nil {
		b.loki.Stop()
	}
	if b.ownWork {
		_ = os.RemoveAll(b.work)
	}
}

func (b *bench) step(format string, args ...any) {
	fmt.Fprintf(b.progress, "==> "+format+"\n", args...)
}

func (b *bench) add(r row) {
	b.rows = append(b.rows, r)
	fmt.Fprintf(b.progress, "    %s: %s (target %s) %s\n", r.metric, r.measured, r.target, r.met)
}

// judge adds a row with a target: met says whether it was reached.
func (b *bench) judge(metric, target, measured string, met bool) {
	verdict := "NO"
	if met {
		verdict = "yes"
	}
	b.add(row{metric: metric, target: target, measured: measured, met: verdict})
}

// note adds a row without a target, for context.
func (b *bench) note(metric, measured string) {
	b.add(row{metric: metric, target: "–", measured: measured, met: "–"})
}

func (b *bench) judged() int {
	n := 0
	for _, r := range b.rows {
		if r.met != "–" {
			n++
		}
	}
	return n
}

func (b *bench) missed() int {
	n := 0
	for _, r := range b.rows {
		if r.met == "NO" {
			n++
		}
	}
	return n
}

// binary builds the extension for goarch as `task build` does, once, and
// returns its path: dist-like <work>/<arch>/extensions/<name>, a directory
// that holds only the extension, as /opt/extensions would.
func (b *bench) binary(ctx context.Context, goarch string) (string, error) {
	return b.buildIn(ctx, b.root, filepath.Join(b.work, goarch), goarch)
}

// baselineBinary is binary for the -baseline revision, whose source is
// taken from git into the work directory.
func (b *bench) baselineBinary(ctx context.Context, goarch string) (string, error) {
	src := filepath.Join(b.work, "baseline-src")
	if _, err := os.Stat(src); err != nil {
		if err := gitExport(ctx, b.root, b.opts.baseline, src); err != nil {
			return "", err
		}
	}
	return b.buildIn(ctx, src, filepath.Join(b.work, "baseline", goarch), goarch)
}

func (b *bench) buildIn(ctx context.Context, src, dir, goarch string) (string, error) {
	bin := filepath.Join(dir, "extensions", extensionName)
	if b.built[bin] {
		return bin, nil
	}
	if err := gobuild.Build(ctx, ".", bin, gobuild.Options{Dir: src, Layer: true, GOARCH: goarch, Version: "benchmark"}); err != nil {
		return "", fmt.Errorf("building the extension in %s for %s: %w", src, goarch, err)
	}
	b.built[bin] = true
	return bin, nil
}

// gitExport writes the tree of a git revision of the repository at root
// into dir, with `git archive` read by archive/tar (nothing else needed).
func gitExport(ctx context.Context, root, rev, dir string) error {
	cmd := exec.CommandContext(ctx, "git", "archive", "--format=tar", rev)
	cmd.Dir = root
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("-baseline: git archive %s: %w", rev, err)
	}
	extractErr := untar(out, dir)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("-baseline: git archive %s: %w: %s", rev, err, stderr.String())
	}
	return extractErr
}

// untar extracts the regular files and directories of a tar stream into
// dir, refusing paths that would leave it.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the baseline's tar: %w", err)
		}
		if !filepath.IsLocal(h.Name) {
			return fmt.Errorf("the baseline's tar holds %q, outside its root", h.Name)
		}
		path := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755|0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("extracting %s: %w", h.Name, err)
			}
		}
	}
}

// extensionsDir is the directory of the build for this machine, to run in
// the emulator.
func (b *bench) extensionsDir(ctx context.Context) (string, error) {
	bin, err := b.binary(ctx, runtime.GOARCH)
	if err != nil {
		return "", err
	}
	return filepath.Dir(bin), nil
}

// lokiAndExtensions is what an emulator scenario needs: the real Loki and
// the directory of the extension's build.
func (b *bench) lokiAndExtensions(ctx context.Context) (*lokiserver.Server, string, error) {
	srv, err := b.lokiServer(ctx)
	if err != nil {
		return nil, "", err
	}
	dir, err := b.extensionsDir(ctx)
	return srv, dir, err
}

// lokiServer starts the real Loki on first use.
func (b *bench) lokiServer(ctx context.Context) (*lokiserver.Server, error) {
	if b.loki != nil {
		return b.loki, nil
	}
	bin, err := lokibin.Ensure(ctx, b.progress)
	if err != nil {
		return nil, err
	}
	var output io.Writer
	if b.opts.verbose {
		output = b.progress
	}
	srv, err := lokiserver.Start(ctx, lokiserver.Options{Binary: bin, HighIngestionLimits: true, Output: output})
	if err != nil {
		return nil, err
	}
	b.loki = srv
	return srv, nil
}

// machine describes where the figures were taken.
func machine(ctx context.Context) string {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	goVersion := runtime.Version()
	if out, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output(); err == nil {
		goVersion = strings.TrimSpace(string(out))
	}
	load := "?"
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(data)); len(f) >= 3 {
			load = strings.Join(f[:3], " ")
		}
	}
	return fmt.Sprintf("Machine: %s, %d cores (nproc), %s %s/%s, load average at start %s, %s",
		model, runtime.NumCPU(), goVersion, runtime.GOOS, runtime.GOARCH, load, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
}

func writeTable(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "metric\ttarget\tmeasured\tmet?")
	fmt.Fprintln(tw, "------\t------\t--------\t----")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.metric, r.target, r.measured, r.met)
	}
	_ = tw.Flush()
}
