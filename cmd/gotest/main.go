// Command gotest runs `go test -json` with the arguments it is given and
// prints what plain `go test` prints (a line per package, and the output of
// failing tests), then every skipped test with the reason it gave, and a
// closing count. Without it a skip is silent unless -v is set, and a test
// that skips for want of a tool (Loki, Node.js) looks like one that passed.
//
// Usage: go run ./cmd/gotest [go test flags] [packages]
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (test2json's TestEvent).
type event struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

// key names a test within its package.
type key struct{ pkg, test string }

// skip is one skipped test and why.
type skip struct {
	key
	reason string
}

// tally follows the event stream and prints as it goes.
type tally struct {
	out                     io.Writer
	outputs                 map[key][]string
	passed, failed, skipped int
	skips                   []skip
}

func main() {
	args := append([]string{"test", "-json"}, os.Args[1:]...)
	cmd := exec.Command("go", args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "gotest:", err)
		os.Exit(2)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "gotest:", err)
		os.Exit(2)
	}
	t := &tally{out: os.Stdout, outputs: map[key][]string{}}
	t.read(stdout)
	err = cmd.Wait()
	t.summarize()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		os.Exit(exit.ExitCode())
	case err != nil:
		fmt.Fprintln(os.Stderr, "gotest:", err)
		os.Exit(2)
	}
}

// read consumes the events; a line that is not an event (a build error
// printed by go itself) is passed through.
func (t *tally) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Action == "" {
			fmt.Fprintln(t.out, sc.Text())
			continue
		}
		t.handle(ev)
	}
}

func (t *tally) handle(ev event) {
	k := key{ev.Package, ev.Test}
	switch ev.Action {
	case "output":
		if ev.Test == "" {
			// Package-level lines: "ok", "FAIL", "?", build output.
			if !strings.HasPrefix(ev.Output, "=== ") && !strings.HasPrefix(ev.Output, "--- ") && ev.Output != "PASS\n" && ev.Output != "FAIL\n" {
				fmt.Fprint(t.out, ev.Output)
			}
			return
		}
		t.outputs[k] = append(t.outputs[k], ev.Output)
	case "pass":
		if ev.Test != "" {
			t.passed++
			delete(t.outputs, k)
		}
	case "fail":
		if ev.Test != "" {
			t.failed++
			// A failing subtest's output is printed with its parent's.
			if !strings.Contains(ev.Test, "/") {
				t.printFamily(k)
			}
		}
	case "skip":
		if ev.Test != "" {
			t.skipped++
			t.skips = append(t.skips, skip{k, reason(t.outputs[k])})
			delete(t.outputs, k)
		}
	}
}

// printFamily prints the output of a failed test and of its subtests.
func (t *tally) printFamily(parent key) {
	var keys []key
	for k := range t.outputs {
		if k.pkg == parent.pkg && (k.test == parent.test || strings.HasPrefix(k.test, parent.test+"/")) {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].test < keys[j].test })
	for _, k := range keys {
		for _, line := range t.outputs[k] {
			fmt.Fprint(t.out, line)
		}
		delete(t.outputs, k)
	}
}

// reason is the last thing a skipped test said before its "--- SKIP" line.
func reason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "--- SKIP") || strings.HasPrefix(l, "=== ") {
			continue
		}
		return l
	}
	return "(no reason given)"
}

func (t *tally) summarize() {
	if len(t.skips) > 0 {
		fmt.Fprintf(t.out, "\nskipped tests (%d), with the reason each gave:\n", len(t.skips))
		sort.Slice(t.skips, func(i, j int) bool {
			if t.skips[i].pkg != t.skips[j].pkg {
				return t.skips[i].pkg < t.skips[j].pkg
			}
			return t.skips[i].test < t.skips[j].test
		})
		for _, s := range t.skips {
			fmt.Fprintf(t.out, "  %s %s: %s\n", shortPackage(s.pkg), s.test, s.reason)
		}
	}
	fmt.Fprintf(t.out, "\n%d passed, %d failed, %d skipped\n", t.passed, t.failed, t.skipped)
}

// shortPackage drops the module path, which every package here shares.
func shortPackage(pkg string) string {
	if i := strings.Index(pkg, "grafana-loki-extension/"); i >= 0 {
		return pkg[i+len("grafana-loki-extension/"):]
	}
	return pkg
}
