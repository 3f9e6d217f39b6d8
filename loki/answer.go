package loki

import (
	"context"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// answer is what one request got: Loki's status, headers and message, or
// the error that stood in for them.
type answer struct {
	status int
	header http.Header
	msg    string
	err    error
}

// verdict is what an answer means for the entries of its request.
type verdict int

const (
	// answerStored: 2xx, the entries are stored.
	answerStored verdict = iota
	// answerRejected: refused for a reason retrying will not fix (a 4xx
	// other than 400, 401, 403, 408 and 429; a redirect; a request that
	// could not be built). Counted and dropped.
	answerRejected
	// answerUnauthorized: 401 or 403. Rejected, unless new credentials help.
	answerUnauthorized
	// answerInvalid: 400, some entries (or their structured metadata)
	// refused; Loki stores the others.
	answerInvalid
	// answerRetry: Loki may take them moments later (a 5xx, a connection
	// reset, an answer cut short; or, for a push that retries at its own
	// pace, any failure that may pass with no pause asked for): try again
	// after the backoff, as far as the caller's bounds allow.
	answerRetry
	// answerAway: Loki may take them later, but not within this push: the
	// connection was refused, its name did not resolve, it (or a proxy) answered
	// 429, 408 or 407, or it asked for a pause (Retry-After). The push ends at once and
	// the caller schedules the next attempt.
	answerAway
	// answerHung: the request's own timeout passed; Loki accepted the
	// connection and did not answer.
	answerHung
	// answerCalledOff: the caller's context ended during the request.
	answerCalledOff
)

// try is what classify needs to know of the push besides the answer.
type try struct {
	// ctxErr is the caller's context's error when the answer came.
	ctxErr error
	// ownPace is true when the push retries at its own pace for as long as
	// its context lasts (the SHUTDOWN drain): then only a pause Loki asked
	// for ends it early. Otherwise (a window, a background push) the caller
	// has its own schedule of attempts, and a failure that says Loki is
	// away ends the push at once rather than spend the window on it.
	ownPace bool
	// retryAfter is the pause Loki's answer asked for, zero if none.
	retryAfter time.Duration
}

// classify says what an answer means. It decides alone whether the client
// counts the entries stored or rejected, retries, or gives up, so that
// rule is in one place.
func classify(a answer, t try) verdict {
	switch {
	case errors.Is(a.err, errBuildRequest):
		return answerRejected
	case a.err != nil && t.ctxErr != nil:
		return answerCalledOff
	case errors.Is(a.err, context.DeadlineExceeded):
		return answerHung
	case a.err != nil:
		return transient(flakyError(a.err), t)
	case a.status >= 200 && a.status < 300:
		return answerStored
	case a.status >= 300 && a.status < 400:
		return answerRejected
	case a.status == http.StatusUnauthorized || a.status == http.StatusForbidden:
		return answerUnauthorized
	case a.status == http.StatusBadRequest:
		return answerInvalid
	case a.status == http.StatusTooManyRequests || a.status == http.StatusRequestTimeout:
		// Loki's rate limiter (or its gateway's): a retry moments later
		// meets the same limit, and adds to what it limits.
		return transient(false, t)
	case a.status == http.StatusProxyAuthRequired:
		// A forward proxy (HTTPS_PROXY) refusing the request is an outage
		// on the way to Loki, not Loki refusing the lines.
		return transient(false, t)
	case a.status >= 400 && a.status < 500:
		return answerRejected
	default:
		return transient(true, t)
	}
}

// transient is the verdict on a failure that may pass: a flaky one (a
// 5xx, a reset) is worth a quick retry, the others say Loki is away for
// now, unless the push retries at its own pace.
func transient(flaky bool, t try) verdict {
	switch {
	case t.retryAfter > 0:
		return answerAway
	case flaky || t.ownPace:
		return answerRetry
	default:
		return answerAway
	}
}

// flakyError reports whether a failed request's error is one a retry
// moments later may not meet: the connection reset or closed before the
// answer, as a restarting Loki or a load balancer's idle cut does. A
// refused connection, a name that does not resolve or a dial that timed
// out say Loki is not there, which lasts longer than a window.
func flakyError(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// maxMessage bounds how much of Loki's answer is kept for the log;
// maxAnswer bounds how much is read: a 400 may list every entry it refused
// and put its counts at the end.
const (
	maxMessage = 512
	maxAnswer  = 64 * 1024
)

// shortMessage keeps the head and the tail (where Loki puts its totals) of
// a long answer.
func shortMessage(msg string) string {
	if len(msg) <= maxMessage {
		return msg
	}
	head, tail := strings.ToValidUTF8(msg[:maxMessage/2], ""), strings.ToValidUTF8(msg[len(msg)-maxMessage/2:], "")
	return head + " … " + tail
}

// Loki's ways of saying how many entries of a push a 400 refused: Loki 3
// answers "N errors like: <reason>; M errors like: …" when several were,
// older releases "total ignored: N out of M" per stream. Compiled on first
// use, not at start: compiling costs about half a millisecond of the
// extension's init, billed and part of the cold start, for patterns only a
// 400 needs.
var (
	errorsLike   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(\d+) errors like: `) })
	totalIgnored = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`total ignored: (\d+) out of \d+`) })
)

// refusedCount reads how many of a push's n entries a 400 refused. Loki
// stores the valid entries of such a push. A single reason about one entry
// (a line too long, a timestamp out of range, its metadata too large)
// counts one; known is false when the answer does not say (a refusal of a
// whole stream, for its labels, say).
func refusedCount(msg string, n int) (refused int, known bool) {
	for _, re := range []*regexp.Regexp{errorsLike(), totalIgnored()} {
		matches := re.FindAllStringSubmatch(msg, -1)
		if len(matches) == 0 {
			continue
		}
		for _, m := range matches {
			v, _ := strconv.Atoi(m[1])
			refused += v
		}
		return min(refused, n), true
	}
	if !strings.Contains(msg, "\n") && containsAny(msg, entryReasons) {
		return 1, true
	}
	return 0, false
}

// entryReasons are the words of Loki's reasons for refusing one entry, as
// opposed to a whole stream.
var entryReasons = []string{"timestamp too", "too far behind", "max entry size", "line too long", "structured metadata too large", "out of order"}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// retryAfter reads Retry-After in either of its forms (RFC 9110 §10.2.3):
// seconds, which Loki's gateways send, or an HTTP date, which proxies in
// front of it may. Anything else, or a time already past, is no wait.
func retryAfter(h http.Header) time.Duration {
	return parseRetryAfter(h.Get("Retry-After"), time.Now())
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(secs, 0)) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return at.Sub(now)
	}
	return 0
}
