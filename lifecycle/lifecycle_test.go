package lifecycle

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/config"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokitest"
	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/telemetryApi"
)

// Fast tests of the lifecycle (run, onInvoke, onShutdown, nextEvent, idle,
// degrade) against the fakes of fakeapi_test.go: no Loki, no sandbox. Times
// are loose bounds that tell "waits for X" (hundreds of ms or more) from
// "does not" (a few ms), never exact figures.

// lostAfter is the listener's LostAfter with testConfig's buffering timeout.
const lostAfter = 25*time.Millisecond + lostRuntimeDoneQuiet

// Each way out of onInvoke, in the default flush mode: how long the INVOKE
// holds the next /next, and whether the invocation's lines were pushed
// before it. Whatever was not pushed then goes out in the SHUTDOWN drain.
func TestOnInvokeExits(t *testing.T) {
	t.Parallel()
	lines := []string{"r1 first", "r1 second"}
	flushTimeout := testConfig("").FlushTimeout
	tests := []struct {
		name string
		// subscribe is the Telemetry API's answer to the subscription.
		subscribe int
		// deadline is the INVOKE's, from now; zero sends no deadlineMs.
		deadline time.Duration
		// telemetry is posted once the INVOKE has been handed out, delay
		// later.
		telemetry []telemetryApi.Event
		delay     time.Duration
		// minWait and maxWait bound the time from the INVOKE's answer to
		// the next /next call.
		minWait, maxWait time.Duration
		pushedBeforeNext bool
		shutdownReason   string
	}{
		{
			name:      "runtimeDone arrives: waits for it, pushes, then /next",
			subscribe: http.StatusOK, deadline: 10 * time.Second,
			telemetry: invocation("r1", "success", lines...), delay: 200 * time.Millisecond,
			minWait: 200 * time.Millisecond, maxWait: 2 * time.Second, pushedBeforeNext: true,
			shutdownReason: "spindown",
		},
		{
			// docs/lambda-runtime-contract.md#reset-after-a-failure: the
			// reset's SHUTDOWN budget goes to the drain, which pushes them.
			name:      "runtimeDone with status timeout: /next at once, no push",
			subscribe: http.StatusOK, deadline: 10 * time.Second,
			telemetry: invocation("r1", "timeout", lines...),
			maxWait:   2 * time.Second, shutdownReason: "timeout",
		},
		{
			name:      "runtimeDone with status failure: /next at once, no push",
			subscribe: http.StatusOK, deadline: 10 * time.Second,
			telemetry: invocation("r1", "failure", lines...),
			maxWait:   2 * time.Second, shutdownReason: "failure",
		},
		{
			name:      "records dropped and no runtimeDone: gives up after LostAfter, pushes",
			subscribe: http.StatusOK, deadline: 10 * time.Second,
			telemetry: append(invocation("r1", "", lines...), logsDropped(3)),
			minWait:   lostAfter / 2, maxWait: 2 * time.Second, pushedBeforeNext: true,
			shutdownReason: "spindown",
		},
		{
			// The wait takes the whole budget, so the push before /next
			// has none left: the lines stay queued for the next window
			// (here the drain).
			name:      "no runtimeDone, no drops: waits until the deadline less the margin",
			subscribe: http.StatusOK, deadline: 900 * time.Millisecond,
			telemetry: invocation("r1", "", lines...),
			minWait:   900*time.Millisecond - invokeMargin - 100*time.Millisecond, maxWait: 2 * time.Second,
			shutdownReason: "spindown",
		},
		{
			name:      "INVOKE without deadlineMs: bounded by FLUSH_TIMEOUT_MS",
			subscribe: http.StatusOK,
			telemetry: invocation("r1", "", lines...),
			minWait:   flushTimeout / 2, maxWait: 2 * time.Second,
			shutdownReason: "spindown",
		},
		{
			// docs/lambda-runtime-contract.md#local-emulators: nothing
			// will ever arrive, so nothing is awaited.
			name:      "telemetry stub (subscribe answered 202): no waiting at all",
			subscribe: http.StatusAccepted, deadline: 10 * time.Second,
			maxWait: 500 * time.Millisecond, shutdownReason: "spindown",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := startExtension(t, tt.subscribe, nil)
			h.api.queue(invokeEvent("r1", tt.deadline))
			invoke := h.api.awaitCall(t, 1, true)
			var want []string
			if len(tt.telemetry) > 0 {
				time.Sleep(tt.delay)
				h.post(t, tt.telemetry...)
				want = lines
			}
			next := h.api.awaitCall(t, 2, false)
			if wait := next.arrived.Sub(invoke.answered); wait < tt.minWait || wait > tt.maxWait {
				t.Errorf("the next /next came %s after the INVOKE, want between %s and %s", wait, tt.minWait, tt.maxWait)
			}
			pushed := h.pusher.DeliveredBefore(next.arrived)
			if tt.pushedBeforeNext {
				if m := missing(pushed, want); len(m) > 0 {
					t.Errorf("lines %q not pushed before /next (pushed %q)", m, pushed)
				}
			} else if len(pushed) > 0 {
				t.Errorf("pushed %q before /next, want no push", pushed)
			}

			h.api.queue(shutdownEvent(tt.shutdownReason, 2*time.Second))
			if code := h.wait(t); code != 0 {
				t.Fatalf("run returned %d, want 0", code)
			}
			shutdownLine := fmt.Sprintf("SHUTDOWN Reason: %s RequestId: r1", tt.shutdownReason)
			if tt.shutdownReason == "timeout" || tt.shutdownReason == "failure" {
				want = append(want, shutdownLine)
			} else if slices.Contains(h.pusher.Delivered(), shutdownLine) {
				t.Errorf("pushed %q at a %s", shutdownLine, tt.shutdownReason)
			}
			if m := missing(h.pusher.Delivered(), want); len(m) > 0 {
				t.Errorf("lines %q never pushed (pushed %q)", m, h.pusher.Delivered())
			}
			if log := h.log.String(); !strings.Contains(log, `msg="shut down"`) {
				t.Errorf("no shutdown summary without losses")
			}
		})
	}
}

// Adaptive mode: invocations closer than the interval call /next at once
// and push the previous invocation's lines in the background during the
// next one; after a gap longer than the interval the INVOKE waits for its
// runtimeDone and pushes before /next again.
func TestAdaptiveSwitchAndFallback(t *testing.T) {
	t.Parallel()
	const interval = 500 * time.Millisecond
	h := startExtension(t, http.StatusOK, func(c *config.Config) {
		c.Flush = config.FlushStrategy{Mode: config.FlushAdaptive, Interval: interval}
		// The background push waits up to this for the runtimeDone of an
		// invocation that did not wait for it.
		c.FlushTimeout = time.Second
	})

	// The first invocation has no predecessor: it waits and pushes.
	h.api.queue(invokeEvent("a1", 10*time.Second))
	h.api.awaitCall(t, 1, true)
	h.post(t, invocation("a1", "success", "a1 line")...)
	next := h.api.awaitCall(t, 2, false)
	if m := missing(h.pusher.DeliveredBefore(next.arrived), []string{"a1 line"}); len(m) > 0 {
		t.Fatalf("the first invocation did not push %q before /next", m)
	}

	// The second comes at once: /next without waiting for a runtimeDone,
	// which Lambda would deliver only after the thaw.
	h.api.queue(invokeEvent("a2", 10*time.Second))
	invoke := h.api.awaitCall(t, 2, true)
	next = h.api.awaitCall(t, 3, false)
	if wait := next.arrived.Sub(invoke.answered); wait > 300*time.Millisecond {
		t.Errorf("a quick second invocation held /next %s, want no wait", wait)
	}
	// The third comes at once too. The second's telemetry arrives only
	// after this thaw; the background push waits for its runtimeDone and
	// pushes it during the third invocation.
	h.api.queue(invokeEvent("a3", 10*time.Second))
	invoke = h.api.awaitCall(t, 3, true)
	next = h.api.awaitCall(t, 4, false)
	if wait := next.arrived.Sub(invoke.answered); wait > 300*time.Millisecond {
		t.Errorf("a quick third invocation held /next %s, want no wait", wait)
	}
	time.Sleep(100 * time.Millisecond)
	h.post(t, invocation("a2", "success", "a2 line")...)
	eventually(t, "a2's line pushed in the background", func() bool {
		for _, c := range h.pusher.Pushes() {
			if c.Answer == lokitest.Deliver && !foreground(c) && slices.Contains(c.Lines, "a2 line") {
				return true
			}
		}
		return false
	})
	h.post(t, invocation("a3", "success", "a3 line")...)

	// Traffic slows: the next INVOKE waits for its runtimeDone again, and
	// its push before /next takes the third invocation's line too.
	time.Sleep(time.Until(invoke.answered.Add(interval + 200*time.Millisecond)))
	h.api.queue(invokeEvent("a4", 10*time.Second))
	h.api.awaitCall(t, 4, true)
	time.Sleep(200 * time.Millisecond)
	posted := time.Now()
	h.post(t, invocation("a4", "success", "a4 line")...)
	next = h.api.awaitCall(t, 5, false)
	if next.arrived.Before(posted) {
		t.Errorf("after a slow gap /next came before the runtimeDone")
	}
	if m := missing(h.pusher.DeliveredBefore(next.arrived), []string{"a3 line", "a4 line"}); len(m) > 0 {
		t.Errorf("after a slow gap %q were not pushed before /next", m)
	}

	h.api.queue(shutdownEvent("spindown", 2*time.Second))
	if code := h.wait(t); code != 0 {
		t.Fatalf("run returned %d", code)
	}
}

// While Loki is away the first window fails once; the invocations after it
// call /next right after their runtimeDone without a push, and the
// background attempts deliver what waited once Loki is back. The outage is
// logged once each way, and windows push again after it.
func TestOutageSkipsWindowsUntilLokiIsBack(t *testing.T) {
	t.Parallel()
	// testConfig's OutageRetryMax keeps the attempts 0.5 to 1 s apart
	// (outbox.DefaultRetryMin is 1 s).
	h := startExtension(t, http.StatusOK, nil)
	h.pusher.Answer(lokitest.Down)
	var want []string
	for i, id := range []string{"o1", "o2", "o3"} {
		h.api.queue(invokeEvent(id, 10*time.Second))
		invoke := h.api.awaitCall(t, i+1, true)
		h.post(t, invocation(id, "success", id+" line")...)
		want = append(want, id+" line")
		next := h.api.awaitCall(t, i+2, false)
		windows := 0
		for _, c := range h.pusher.Pushes() {
			if foreground(c) && c.At.After(invoke.answered) && c.At.Before(next.arrived) {
				windows++
			}
		}
		switch {
		case i == 0 && windows != 1:
			t.Errorf("the first invocation made %d pushes before /next, want the one that finds Loki away", windows)
		case i > 0 && windows != 0:
			t.Errorf("invocation %s made %d pushes before /next during the outage, want none", id, windows)
		}
	}
	// A background attempt fails too before Loki comes back: the outage is
	// still logged once.
	eventually(t, "a background attempt while Loki is away", func() bool {
		return slices.ContainsFunc(h.pusher.Pushes(), func(c lokitest.Push) bool { return !foreground(c) })
	})
	if got := h.pusher.Delivered(); len(got) > 0 {
		t.Fatalf("delivered %q while Loki was away", got)
	}

	h.pusher.Answer(lokitest.Deliver)
	eventually(t, "the background attempts to deliver what waited", func() bool {
		return len(missing(h.pusher.Delivered(), want)) == 0
	})
	for _, c := range h.pusher.Pushes() {
		if c.Answer == lokitest.Deliver && foreground(c) {
			t.Errorf("what waited went out in a bounded push (a window or the drain), want the background's: %q", c.Lines)
		}
	}
	eventually(t, "the recovery logged", func() bool { return strings.Contains(h.log.String(), "Loki is back") })

	// Windows push before /next again.
	h.api.queue(invokeEvent("o4", 10*time.Second))
	h.api.awaitCall(t, 4, true)
	h.post(t, invocation("o4", "success", "o4 line")...)
	next := h.api.awaitCall(t, 5, false)
	if m := missing(h.pusher.DeliveredBefore(next.arrived), []string{"o4 line"}); len(m) > 0 {
		t.Errorf("after the outage %q were not pushed before /next", m)
	}

	h.api.queue(shutdownEvent("spindown", 2*time.Second))
	if code := h.wait(t); code != 0 {
		t.Fatalf("run returned %d", code)
	}
	log := h.log.String()
	if n := strings.Count(log, "Loki is unavailable"); n != 1 {
		t.Errorf("the outage was logged %d times, want once", n)
	}
	if n := strings.Count(log, "Loki is back"); n != 1 {
		t.Errorf("the recovery was logged %d times, want once", n)
	}
}

// SHUTDOWN pushes everything queued, including a batch that arrives after
// it while telemetry is not yet quiet, and returns before the deadline
// whatever Loki does; lines it could not deliver are counted as lost in the
// summary.
func TestShutdownDrain(t *testing.T) {
	t.Parallel()
	const deadline = time.Second
	tests := []struct {
		name string
		mode lokitest.Answer
		// summary is a text the shutdown summary must hold; lost says
		// whether it counts lines lost.
		summary string
		lost    bool
	}{
		{"Loki working: all pushed, the late batch too", lokitest.Deliver, `msg="shut down"`, false},
		{"Loki refusing connections: returns in time, counts the lost", lokitest.Down, "lost=4", true},
		{"Loki hanging: returns in time, counts the lost", lokitest.Hang, "lost=4", true},
		{"Loki rejecting: nothing left to lose", lokitest.Reject, "rejected=4", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := startExtension(t, http.StatusOK, func(c *config.Config) {
				// A longer buffering timeout leaves the late batch a wide
				// window: the drain waits 50 ms past it for telemetry to
				// go quiet.
				c.Buffering.TimeoutMs = 500
			})
			h.pusher.Answer(tt.mode)
			// Lines of the init, before the first /next: no window pushes
			// them, only the drain.
			h.post(t, functionLine("init 1"), functionLine("init 2"), functionLine("init 3"))
			sd := shutdownEvent("spindown", deadline)
			h.api.queue(sd)
			h.api.awaitCall(t, 1, true)
			time.Sleep(100 * time.Millisecond)
			h.post(t, functionLine("late"))
			code := h.wait(t)
			if returned := time.Now(); !returned.Before(sd.Deadline()) {
				t.Errorf("returned %s after the SHUTDOWN deadline", returned.Sub(sd.Deadline()))
			}
			if code != 0 {
				t.Errorf("run returned %d, want 0", code)
			}
			all := []string{"init 1", "init 2", "init 3", "late"}
			switch got := h.pusher.Delivered(); {
			case tt.mode == lokitest.Deliver && len(missing(got, all)) > 0:
				t.Errorf("lines %q not pushed (pushed %q)", missing(got, all), got)
			case tt.mode != lokitest.Deliver && len(got) > 0:
				t.Errorf("delivered %q with Loki %v", got, tt.mode)
			}
			log := h.log.String()
			if !strings.Contains(log, tt.summary) {
				t.Errorf("the shutdown summary lacks %q", tt.summary)
			}
			// lost= is always there; it counts only when not zero.
			if strings.Contains(log, " lost=") && !strings.Contains(log, " lost=0 ") != tt.lost {
				t.Errorf("the summary counts lost lines: %v, want %v", !tt.lost, tt.lost)
			}
		})
	}
}

// A pause Loki asked for (Retry-After) is waited out by the SHUTDOWN drain
// when the deadline leaves time for a push after it, with the default
// LOKI_TIMEOUT_MS too; when it does not, the drain pushes anyway, as late as
// leaves time to, rather than lose the lines.
func TestShutdownDrainWaitsOutLokisPause(t *testing.T) {
	t.Parallel()
	const deadline = 2 * time.Second
	tests := []struct {
		name  string
		pause time.Duration
		// waits says the push must come no sooner than the pause.
		waits bool
	}{
		{"pause within the budget: waited out", 800 * time.Millisecond, true},
		{"pause beyond the deadline: pushed before it", 10 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := startExtension(t, http.StatusOK, func(c *config.Config) {
				c.Loki.RequestTimeout = loki.DefaultRequestTimeout
			})
			h.pusher.Answer(lokitest.Down)
			h.pusher.RetryAfter(tt.pause)
			// A window finds Loki answering 429: the outage begins.
			h.api.queue(invokeEvent("r1", 10*time.Second))
			h.api.awaitCall(t, 1, true)
			h.post(t, invocation("r1", "success", "r1 line")...)
			h.api.awaitCall(t, 2, false)
			calls := h.pusher.Pushes()
			if len(calls) == 0 {
				t.Fatal("the window made no push")
			}
			refused := calls[len(calls)-1].At
			h.pusher.Answer(lokitest.Deliver)

			sd := shutdownEvent("spindown", deadline)
			h.api.queue(sd)
			if code := h.wait(t); code != 0 {
				t.Fatalf("run returned %d", code)
			}
			if returned := time.Now(); !returned.Before(sd.Deadline()) {
				t.Errorf("returned %s after the SHUTDOWN deadline", returned.Sub(sd.Deadline()))
			}
			var pushed time.Time
			for _, c := range h.pusher.Pushes() {
				if c.Answer == lokitest.Deliver && slices.Contains(c.Lines, "r1 line") {
					pushed = c.At
				}
			}
			switch {
			case pushed.IsZero():
				t.Fatalf("the drain did not deliver the line (pushes %+v)", h.pusher.Pushes())
			case tt.waits && pushed.Sub(refused) < tt.pause:
				t.Errorf("pushed %s after Loki asked for a pause of %s", pushed.Sub(refused), tt.pause)
			}
		})
	}
}

// A Loki that keeps asking for a pause reaching past the SHUTDOWN deadline
// gets a few requests from the drain, not one every few milliseconds: the
// drain pushes once as late as leaves time to, and when Loki asks again it
// does not push again. A whole fleet shuts down at once.
func TestShutdownDrainDoesNotHammerAPausedLoki(t *testing.T) {
	t.Parallel()
	h := startExtension(t, http.StatusOK, func(c *config.Config) {
		c.Loki.RequestTimeout = loki.DefaultRequestTimeout
	})
	h.pusher.Answer(lokitest.Down)
	h.pusher.RetryAfter(10 * time.Second)
	h.api.queue(invokeEvent("r1", 10*time.Second))
	h.api.awaitCall(t, 1, true)
	h.post(t, invocation("r1", "success", "r1 line")...)
	h.api.awaitCall(t, 2, false)
	before := len(h.pusher.Pushes())

	h.api.queue(shutdownEvent("spindown", 2*time.Second))
	if code := h.wait(t); code != 0 {
		t.Fatalf("run returned %d", code)
	}
	if drained := len(h.pusher.Pushes()) - before; drained < 1 || drained > 3 {
		t.Errorf("the drain pushed %d times to a Loki asking for a pause past the deadline, want 1 to 3", drained)
	}
	if log := h.log.String(); !strings.Contains(log, "lost=1") {
		t.Errorf("the shutdown summary does not count the line lost")
	}
}

// /next failing in the running loop: three failures in a row mean the
// sandbox is beyond saving (docs/lambda-runtime-contract.md#error-answers),
// so the extension drains, reports exit/error and returns 1; failures that
// a good event interrupts are only retried.
func TestNextFailuresInTheRunningLoop(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		fail     []int
		invokes  []string
		shutdown bool
		wantCode int
		// wantExitError says exit/error with Extension.NextFailed is
		// reported after the drain.
		wantExitError bool
		wantCalls     int
	}{
		{"three in a row: drain, then exit/error", []int{2, 3, 4}, []string{"n1"}, false, 1, true, 4},
		{"not in a row (500, INVOKE, 500, INVOKE, 500): retried", []int{1, 3, 5}, []string{"n1", "n2"}, true, 0, false, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := startExtension(t, http.StatusOK, func(c *config.Config) {
				// The invocations' lines stay queued at their windows: only
				// the drain pushes them.
				c.DispatchMinBatchSize = 100
			})
			h.api.failNext(tt.fail...)
			var want []string
			for _, id := range tt.invokes {
				h.post(t, invocation(id, "success", id+" line")...)
				want = append(want, id+" line")
				h.api.queue(invokeEvent(id, 10*time.Second))
			}
			if tt.shutdown {
				h.api.queue(shutdownEvent("spindown", 2*time.Second))
			}
			if code := h.wait(t); code != tt.wantCode {
				t.Errorf("run returned %d, want %d", code, tt.wantCode)
			}
			if n := len(h.api.nextCalls()); n != tt.wantCalls {
				t.Errorf("%d /next calls, want %d", n, tt.wantCalls)
			}
			reported := h.api.errorsReported()
			if !tt.wantExitError {
				if len(reported) > 0 {
					t.Errorf("reported %+v, want nothing", reported)
				}
				if m := missing(h.pusher.Delivered(), want); len(m) > 0 {
					t.Errorf("lines %q never pushed", m)
				}
				return
			}
			if len(reported) != 1 || reported[0].op != "exit/error" || reported[0].errorType != "Extension.NextFailed" {
				t.Fatalf("reported %+v, want one exit/error Extension.NextFailed", reported)
			}
			if m := missing(h.pusher.DeliveredBefore(reported[0].at), want); len(m) > 0 {
				t.Errorf("lines %q not pushed before exit/error", m)
			}
			if !strings.Contains(h.log.String(), `reason="next failed"`) {
				t.Errorf("no shutdown summary with reason \"next failed\"")
			}
		})
	}
}

// /next failing in the degraded loop (a configuration error, shipping
// nothing): the same rules as the running loop; with STRICT_CONFIG the init
// fails visibly with init/error instead, and no /next is made.
func TestNextFailuresInTheDegradedLoop(t *testing.T) {
	t.Parallel()
	cfgErr := errors.New("invalid configuration: LOKI_URL: neither LOKI_URL nor LOKI_IP is set")
	tests := []struct {
		name      string
		strict    bool
		fail      []int
		invokes   int
		shutdown  bool
		wantCode  int
		wantOp    string // the error reported, "" for none
		wantType  string
		wantCalls int
	}{
		{"three in a row: exit/error", false, []int{1, 2, 3}, 0, false, 1, "exit/error", "Extension.NextFailed", 3},
		{"not in a row (500, INVOKE, 500, INVOKE, 500): retried", false, []int{1, 3, 5}, 2, true, 0, "", "", 6},
		{"strict: init/error, no /next", true, nil, 0, false, 1, "init/error", "Extension.ConfigInvalid", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := newFakeAPI(t, http.StatusOK)
			ext := registered(t, api)
			log, buf := testLog(t)
			api.failNext(tt.fail...)
			for i := range tt.invokes {
				api.queue(invokeEvent(fmt.Sprintf("d%d", i), 10*time.Second))
			}
			if tt.shutdown {
				api.queue(shutdownEvent("spindown", 2*time.Second))
			}
			done := make(chan int, 1)
			go func() { done <- degrade(t.Context(), tt.strict, ext, log, "Extension.ConfigInvalid", cfgErr) }()
			select {
			case code := <-done:
				if code != tt.wantCode {
					t.Errorf("degrade returned %d, want %d", code, tt.wantCode)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("degrade did not return")
			}
			if n := len(api.nextCalls()); n != tt.wantCalls {
				t.Errorf("%d /next calls, want %d", n, tt.wantCalls)
			}
			reported := api.errorsReported()
			switch {
			case tt.wantOp == "" && len(reported) > 0:
				t.Errorf("reported %+v, want nothing", reported)
			case tt.wantOp != "" && (len(reported) != 1 || reported[0].op != tt.wantOp || reported[0].errorType != tt.wantType):
				t.Errorf("reported %+v, want one %s %s", reported, tt.wantOp, tt.wantType)
			case tt.wantOp == "init/error" && reported[0].message != cfgErr.Error():
				t.Errorf("init/error says %q, want %q", reported[0].message, cfgErr)
			}
			if !strings.Contains(buf.String(), "LOKI_URL") {
				t.Errorf("the configuration error was not logged")
			}
		})
	}
}

// Where the spill directory cannot be written (a read-only /tmp), the
// extension says so once and goes on without a spill file: lines past the
// memory bound are dropped, counted, and everything else is shipped.
func TestUnwritableSpillDirectoryTurnsTheSpillOff(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h := startExtension(t, http.StatusOK, func(c *config.Config) {
		c.SpillMaxBytes = 64 << 20
		c.SpillDir = filepath.Join(file, "spill") // no directory can be made below a file
	})
	h.api.queue(invokeEvent("s1", 10*time.Second))
	h.api.awaitCall(t, 1, true)
	h.post(t, invocation("s1", "success", "s1 line")...)
	next := h.api.awaitCall(t, 2, false)
	if m := missing(h.pusher.DeliveredBefore(next.arrived), []string{"s1 line"}); len(m) > 0 {
		t.Fatalf("without a spill file, %q were not pushed", m)
	}
	h.api.queue(shutdownEvent("spindown", 2*time.Second))
	if code := h.wait(t); code != 0 {
		t.Fatalf("run returned %d", code)
	}
	if n := strings.Count(h.log.String(), "no spill file (QUEUE_SPILL_DIR)"); n != 1 {
		t.Fatalf("the missing spill file was reported %d times, want once:\n%s", n, h.log.String())
	}
}

// The timed modes push on a timer and never between runtimeDone and /next:
// periodic mode calls /next as soon as the INVOKE is handled, and Managed
// Instances have no INVOKE at all (docs/lambda-runtime-contract.md#managed-instances).
// In both, lines posted while the function runs go out within about one
// interval, in background pushes, and SHUTDOWN ends the run cleanly.
func TestTimedModesPushOnTheTimer(t *testing.T) {
	t.Parallel()
	const interval = 300 * time.Millisecond
	tests := []struct {
		name    string
		tweak   func(*config.Config)
		invokes bool
		schema  string
	}{
		{
			name:    "periodic",
			tweak:   func(c *config.Config) { c.Flush = config.FlushStrategy{Mode: config.FlushPeriodic, Interval: interval} },
			invokes: true, schema: telemetryApi.SchemaVersion,
		},
		{
			name: "Managed Instances",
			tweak: func(c *config.Config) {
				c.ManagedInstances = true
				c.Flush = config.FlushStrategy{Mode: config.FlushPeriodic, Interval: interval}
			},
			schema: telemetryApi.SchemaVersionManagedIn,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := startExtension(t, http.StatusOK, tt.tweak)
			if subs := h.api.subscribed(); subs[0].SchemaVersion != tt.schema {
				t.Errorf("subscribed with schema %q, want %q", subs[0].SchemaVersion, tt.schema)
			}
			calls := 1
			if tt.invokes {
				h.api.queue(invokeEvent("p1", 10*time.Second))
				invoke := h.api.awaitCall(t, 1, true)
				next := h.api.awaitCall(t, 2, false)
				// No runtimeDone has come: the wait of end mode would
				// last until the deadline.
				if wait := next.arrived.Sub(invoke.answered); wait > time.Second {
					t.Errorf("the INVOKE held /next %s, want no wait", wait)
				}
				calls = 2
			}
			posted := time.Now()
			h.post(t, invocation("p1", "success", "p1 first", "p1 second")...)
			eventually(t, "the lines pushed by the timer", func() bool {
				return len(missing(h.pusher.Delivered(), []string{"p1 first", "p1 second"})) == 0
			})
			for _, c := range h.pusher.Pushes() {
				if foreground(c) {
					t.Errorf("a bounded push (a window or the drain) before SHUTDOWN: %+v", c)
				}
				if c.Answer == lokitest.Deliver && c.At.Sub(posted) > interval+time.Second {
					t.Errorf("lines pushed %s after they arrived, want within about %s", c.At.Sub(posted), interval)
				}
			}
			if n := len(h.api.nextCalls()); n != calls {
				t.Errorf("%d /next calls before SHUTDOWN, want %d", n, calls)
			}

			h.api.queue(shutdownEvent("spindown", 2*time.Second))
			if code := h.wait(t); code != 0 {
				t.Fatalf("run returned %d, want 0", code)
			}
			if log := h.log.String(); !strings.Contains(log, `msg="shut down"`) {
				t.Errorf("no shutdown summary:\n%s", log)
			}
		})
	}
}
