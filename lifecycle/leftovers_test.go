package lifecycle

import (
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/config"
	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/outbox/spill"
)

// A process killed with lines in its spill (SIGKILL at the SHUTDOWN
// deadline, out of memory) leaves them in /tmp, which the sandbox keeps:
// the next start pushes them first, oldest first, before its own lines,
// and its summary counts them as recovered.
func TestTheNextStartShipsAKilledProcesssSpill(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	killed, err := spill.Open(spill.Config{Dir: dir, MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	var left []loki.Entry
	for i := range 10 {
		line := "left by the killed process " + strconv.Itoa(i)
		want = append(want, line)
		left = append(left, loki.Entry{Time: time.Now().Add(-time.Minute), Line: line, RequestID: "earlier"})
	}
	if err := killed.Write(left); err != nil {
		t.Fatal(err)
	}
	// No Close: the process was killed.

	h := startExtension(t, http.StatusOK, func(c *config.Config) {
		c.SpillMaxBytes, c.SpillDir = 64<<20, dir
	})
	h.api.queue(invokeEvent("s1", 10*time.Second))
	h.api.awaitCall(t, 1, true)
	h.post(t, invocation("s1", "success", "s1 line")...)
	h.api.awaitCall(t, 2, false)
	h.api.queue(shutdownEvent("spindown", 2*time.Second))
	if code := h.wait(t); code != 0 {
		t.Fatalf("run returned %d", code)
	}
	if got := h.pusher.Delivered(); !slices.Equal(got, append(want, "s1 line")) {
		t.Fatalf("pushed %q, want the killed process's lines first", got)
	}
	log := h.log.String()
	for _, f := range []string{"recovered=10", "written=1", "delivered=11", "lost=0"} {
		if !regexp.MustCompile(`\s` + f + `\s`).MatchString(log) {
			t.Errorf("the summary lacks %s:\n%s", f, log)
		}
	}
}
