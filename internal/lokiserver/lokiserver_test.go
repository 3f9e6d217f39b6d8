package lokiserver_test

import (
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/lokibin"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/loki"
)

func requireLoki(t *testing.T) string {
	bin, err := lokibin.Find()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return bin
}

// Pushes through the real client and reads back through paging, including
// lines that share a timestamp across a page boundary.
func TestPushAndQueryBackAcrossPages(t *testing.T) {
	bin := requireLoki(t)
	srv, err := lokiserver.Start(t.Context(), lokiserver.Options{Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	c, err := loki.New(loki.Config{URL: srv.PushURL(), Labels: map[string]string{"source": "lambda", "function": "paging"}})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Truncate(time.Millisecond)
	var entries []loki.Entry
	for i := range 25 {
		// Pairs of lines share a timestamp, so page boundaries fall inside pairs.
		entries = append(entries, loki.Entry{Time: base.Add(time.Duration(i/2) * time.Millisecond), Line: fmt.Sprintf("line %02d", i)})
	}
	if res := c.PushRetrying(t.Context(), entries, time.Time{}); res.Err != nil || res.Delivered != 25 {
		t.Fatalf("%+v", res)
	}
	for _, pageSize := range []int{3, 4, 7, 5000} {
		lines, err := srv.Query(t.Context(), lokiserver.Query{LogQL: `{function="paging"}`, Start: base.Add(-time.Second), End: base.Add(time.Minute), PageSize: pageSize})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for _, l := range lines {
			seen[l.Line]++
			if l.Labels["source"] != "lambda" {
				t.Fatalf("labels %v", l.Labels)
			}
		}
		if len(lines) != 25 || len(seen) != 25 {
			t.Fatalf("page size %d: %d lines, %d distinct", pageSize, len(lines), len(seen))
		}
	}
}

func TestStopEndsTheProcess(t *testing.T) {
	bin := requireLoki(t)
	srv, err := lokiserver.Start(t.Context(), lokiserver.Options{Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	pid := srv.PID()
	srv.Stop()
	srv.Stop() // idempotent
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("Loki (pid %d) still running after Stop", pid)
	}
}
