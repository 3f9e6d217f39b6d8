package scenario

import (
	"slices"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/faultproxy"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

func TestWindowsOfThePlan(t *testing.T) {
	p := NewPlan(nil, sandbox.Config{}, faultproxy.Fault{})
	r := Result{firstFailed: p.FirstFailed, lastFailed: p.LastFailed}
	for i := range p.Invokes {
		r.Invokes = append(r.Invokes, sandbox.InvokeResult{PostRuntime: time.Duration(i+1) * time.Millisecond})
	}
	// Invocations 3 to 22 counting from 1: the 3rd finds out, the 4th to the
	// 22nd should cost nothing.
	if got := r.FirstWindow(); got != 3*time.Millisecond {
		t.Fatalf("first window %s, want the 3rd invocation's", got)
	}
	during := r.During()
	if len(during) != 19 || during[0] != 4*time.Millisecond || during[len(during)-1] != 22*time.Millisecond {
		t.Fatalf("during the outage: %v, want the 4th to the 22nd", during)
	}
}

func TestPausesAfterRefusal(t *testing.T) {
	at := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	requests := []faultproxy.Request{
		{At: at, Outcome: "forwarded"},
		{At: at.Add(100 * time.Millisecond), Outcome: "failed"},
		{At: at.Add(2300 * time.Millisecond), Outcome: "failed"},
		{At: at.Add(4400 * time.Millisecond), Outcome: "forwarded"},
		{At: at.Add(5 * time.Second), Outcome: "failed"}, // the last: nothing followed
	}
	got := PausesAfterRefusal(requests)
	if want := []time.Duration{2200 * time.Millisecond, 2100 * time.Millisecond}; !slices.Equal(got, want) {
		t.Fatalf("pauses %v, want %v", got, want)
	}
	if n := Refused(requests); n != 3 {
		t.Fatalf("refused %d, want 3", n)
	}
}

func TestReadingTheExtensionsLog(t *testing.T) {
	out := `time=2026-11-28T12:00:00.1Z level=info msg=registered
time=2026-11-28T12:00:01.2Z level=warning msg="Loki is unavailable; 20 lines wait, pushed in the background until it answers: invocations are not held for it meanwhile" delivered=0 error="pushing to http://127.0.0.1:1/api/prom/push: timeout" queued=20 requests=1 retries=0 took=1.500412s window=invoke
time=2026-11-28T12:00:09.2Z level=info msg="Loki is back after 7.9s; what waited is delivered, and pushes before /next resume" delivered=400 queued=0 requests=1 retries=0 took=12.3ms window=background
time=2026-11-28T12:00:12.0Z level=info msg="shut down" delivered=200040 dropped=0 lambdaDropped=0 reason=spindown rejected=0 spilled=177004 took=85ms truncated=0 unconfirmed=0
`
	r := Result{Output: out}
	if began, ended := r.Logged(); began != 1 || ended != 1 {
		t.Fatalf("logged %d, %d", began, ended)
	}
	if d, ok := r.FailedPushTook(); !ok || d != 1500412*time.Microsecond {
		t.Fatalf("failed push took %s, %v", d, ok)
	}
	quick := Result{Output: `level=warning msg="Loki is unavailable; 20 lines wait" queued=20 took="296µs" window=invoke`}
	if d, ok := quick.FailedPushTook(); !ok || d != 296*time.Microsecond {
		t.Fatalf("failed push took %s, %v: a quoted value", d, ok)
	}
	summary := summaryLine(out)
	if field(summary, "delivered") != 200040 || field(summary, "spilled") != 177004 || field(summary, "dropped") != 0 || field(summary, "lost") != 0 {
		t.Fatalf("summary %q read wrong", summary)
	}
	lost := summaryLine(`level=error msg="shutting down with 7 lines undelivered: Loki could not take them before the shutdown deadline" delivered=3 dropped=2 lost=7 lambdaDropped=0`)
	if field(lost, "lost") != 7 || field(lost, "dropped") != 2 {
		t.Fatalf("summary with losses %q read wrong", lost)
	}
	if summaryLine("level=info msg=registered\n") != "" {
		t.Fatal("a summary found where there is none")
	}
}
