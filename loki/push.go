package loki

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/httperr"
	"github.com/lambda-loki/grafana-loki-extension/internal/retry"
	"github.com/lambda-loki/grafana-loki-extension/internal/wait"
)

// Backoff between retries: doubling from minBackoff to maxBackoff, with
// jitter, for as long as the caller's context allows.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 1 * time.Second
)

// Counts add up what pushes did with their entries, and the requests they
// took.
type Counts struct {
	// Delivered entries were stored by Loki.
	Delivered int
	// Rejected entries were refused for a reason retrying will not fix
	// (a 4xx other than 429); they are not returned.
	Rejected int
	// Truncated lines were shortened to MaxLineBytes before pushing.
	Truncated int
	// Unconfirmed entries were in pushes Loki refused in part (a 400 for
	// some of their entries) without saying how many: it stores the valid
	// entries of such a push, so they are neither counted as delivered nor
	// as rejected.
	Unconfirmed int
	// Requests and Retries count HTTP requests.
	Requests, Retries int
}

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	c.Delivered += o.Delivered
	c.Rejected += o.Rejected
	c.Truncated += o.Truncated
	c.Unconfirmed += o.Unconfirmed
	c.Requests += o.Requests
	c.Retries += o.Retries
}

// Result says what happened to the entries given to a push.
type Result struct {
	Counts
	// Undelivered entries could not be delivered before the context ended;
	// the caller keeps them for the next window. Sending them again is safe:
	// Loki ignores exact duplicates.
	Undelivered []Entry
	// Unavailable is true when entries stayed undelivered because Loki
	// failed for a reason that may pass (connection refused or reset,
	// timeout, 5xx, 429), false when the caller's budget simply ran out.
	Unavailable bool
	// TimedOut is true when the last attempt got no answer in time (its
	// own timeout, or the caller's budget): it says nothing of Loki if the
	// sandbox was frozen meanwhile. Stalled says it was: the attempt ended
	// far later than its timeout allows, which only a stopped process does.
	TimedOut, Stalled bool
	// RetryAfter is how long Loki asked the client to wait (Retry-After of a
	// 429 or 503) in its last answer, zero if it did not.
	RetryAfter time.Duration
	// RateLimited says Loki's last answer was 429: it takes lines, but
	// fewer than are sent (its ingestion limits, shared by every sandbox of
	// the function).
	RateLimited bool
	// Err is the last error, nil when everything was delivered. It never
	// contains credentials.
	Err error
	// RejectErr says why the first rejected entries were rejected (Loki's
	// answer), so that a later transient error does not hide it.
	RejectErr error
	// MetadataRefused is set by the one push in the client's life during
	// which Loki refused structured metadata (a Loki 2.x, or
	// allow_structured_metadata: false): its answer, for one warning. The
	// entries were pushed again without it (one more request, counted in
	// Requests and Retries), and every later push leaves it out; they are
	// counted as delivered or rejected by that second answer.
	MetadataRefused error
}

// PushRetrying sends entries to Loki, splitting them into requests of a
// bounded size, retrying what can be retried while ctx lasts; it modifies
// entries' lines in place when they need truncation or UTF-8 repair.
//
// With a zero until the push retries at its own pace (the SHUTDOWN drain):
// every failure that may pass is tried again, with backoff, until ctx
// ends, except that a pause Loki asks for (Retry-After) ends it. Otherwise
// no retry starts after until, and a failure that says Loki is away (a
// refused connection, a name that does not resolve, a 429) ends the push
// at once: the caller has its own schedule of attempts. A window gives it
// a few tens of milliseconds, room for one quick retry of a 5xx or a reset;
// a background push the end of its budget; an outage's attempt the
// present, so that the attempt is one request and the outage's backoff its
// only pace. No request is cut short by until: one cut short may have been
// stored all the same.
func (c *Client) PushRetrying(ctx context.Context, entries []Entry, until time.Time) Result {
	var res Result
	for i := range entries {
		line, truncated := sanitizeLine(entries[i].Line, c.cfg.MaxLineBytes)
		if truncated {
			res.Truncated++
		}
		entries[i].Line = line
	}
	var streams []string // of the request being cut
	for start := 0; start < len(entries); {
		end, size := start, 0
		streams = streams[:0]
		for end < len(entries) {
			n := entries[end].Size()
			if labels := c.labelsFor(&entries[end]); !slices.Contains(streams, labels) {
				n += streamHeaderBytes(labels)
				if end == start || size+n <= c.cfg.MaxRequestBytes {
					streams = append(streams, labels)
				}
			}
			if end > start && size+n > c.cfg.MaxRequestBytes {
				break
			}
			size += n
			end++
		}
		if !c.pushRequest(ctx, entries[start:end], until, &res) {
			res.Undelivered = entries[start:]
			return res
		}
		start = end
	}
	return res
}

// stallMargin is how late past its timeout an attempt may end before it is
// taken for one the process slept through: timers fire late on a loaded
// machine by milliseconds, not by this much.
const stallMargin = 250 * time.Millisecond

// Limits on an entry's metadata, so that Size, and with it a request's
// size, stays bounded whatever a record holds. A record's level is a word,
// and a longer value is not one: Loki refuses a whole line whose metadata
// passes its size limit, so such a level stays in the line only. Request
// IDs come from Lambda, or from a JSON record, which the decoder keeps to
// MaxRequestIDBytes; trace IDs are 32 hex digits.
const (
	MaxRequestIDBytes = 128
	MaxLevelBytes     = 64
	traceIDBytes      = 32
)

// streamHeaderBytes is what a stream adds to a request besides its
// entries: its label string and the framing.
func streamHeaderBytes(labels string) int { return len(labels) + 16 }

// MinRequestBytes is the smallest request bound that holds any one entry
// whose line is at most maxLineBytes long, with the given labels (plus the
// type and level the client may add, and the most shared metadata an entry
// may carry): a request is never cut smaller than one entry, so a smaller
// bound would be exceeded.
func MinRequestBytes(maxLineBytes int, labels map[string]string) int {
	all := make(map[string]string, len(labels)+2)
	for k, v := range labels {
		all[k] = v
	}
	all["type"] = "extension"
	all["level"] = strings.Repeat("x", MaxLevelBytes)
	longest := Entry{Level: all["level"], RequestID: strings.Repeat("x", MaxRequestIDBytes), TraceID: strings.Repeat("x", traceIDBytes)}
	return maxLineBytes + longest.Size() + MaxSharedMetadataBytes + streamHeaderBytes(FormatLabels(all))
}

// pushRequest sends one request, retrying while ctx allows. It returns false
// when the entries were neither delivered nor rejected.
func (c *Client) pushRequest(ctx context.Context, entries []Entry, until time.Time, res *Result) bool {
	meta := c.metadata()
	body := c.encode(entries, meta)
	backoff := minBackoff
	// lastErr becomes the result's error only if the request ends undelivered:
	// a transient failure followed by success is no error.
	var lastErr error
	reauthed := false
	giveUp := func() bool { return c.giveUp(ctx, lastErr, res) }
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return giveUp()
		}
		if attempt > 0 {
			res.Retries++
		}
		res.Requests++
		sent := time.Now()
		a := c.send(ctx, body)
		res.Stalled = a.err != nil && time.Since(sent) > c.cfg.RequestTimeout+max(c.cfg.RequestTimeout/2, stallMargin)
		res.RetryAfter = retryAfter(a.header)
		res.RateLimited = a.status == http.StatusTooManyRequests
		switch classify(a, try{ctxErr: ctx.Err(), ownPace: until.IsZero(), retryAfter: res.RetryAfter}) {
		case answerStored:
			res.Delivered += len(entries)
			return true
		case answerRejected:
			return res.reject(len(entries), c.rejection(a))
		case answerUnauthorized:
			if !reauthed && c.reauth(ctx) {
				// New credentials (a rotated secret): try them at once, once.
				reauthed = true
				continue
			}
			return res.reject(len(entries), fmt.Errorf("pushing to %s: %w (%d %s)", c.ep().redacted, ErrUnauthorized, a.status, shortMessage(a.msg)))
		case answerInvalid:
			if meta != 0 && c.refusedMetadata(a.status, a.msg, res) {
				// Loki stored the entries that had none; sending those
				// again is harmless, as it drops exact duplicates of its
				// newest entries.
				meta = 0
				body = c.encode(entries, meta)
				continue
			}
			return c.refusedInPart(len(entries), a.msg, res)
		case answerHung:
			// The request's own timeout: Loki hangs. Another attempt
			// would most likely hang as long, so the window ends here.
			lastErr = a.err
			return giveUp()
		case answerCalledOff:
			// An attempt cut short by the window's end says less than the
			// failure before it (connection refused, say): keep that one.
			if lastErr == nil {
				lastErr = a.err
			}
			return giveUp()
		case answerAway:
			// Loki is away, or asked for a pause: the caller schedules the
			// next attempt (Result.RetryAfter) rather than spend its budget
			// here.
			lastErr = c.failure(a)
			return giveUp()
		case answerRetry:
			lastErr = c.failure(a)
		}
		if !c.pauseBeforeRetry(ctx, until, &backoff) {
			return giveUp()
		}
	}
}

// giveUp ends a request undelivered with its last error, and says whether
// Loki is unavailable: not when the caller called the request off
// (SHUTDOWN stops the background pushes), which says nothing of Loki.
func (c *Client) giveUp(ctx context.Context, lastErr error, res *Result) bool {
	res.TimedOut = errors.Is(lastErr, context.DeadlineExceeded) || lastErr == nil
	switch {
	case lastErr == nil:
		lastErr = fmt.Errorf("pushing to %s: %w", c.ep().redacted, ctx.Err())
	case errors.Is(lastErr, context.Canceled) && errors.Is(ctx.Err(), context.Canceled):
	default:
		res.Unavailable = true
	}
	res.Err = lastErr
	return false
}

// pauseBeforeRetry waits before the next attempt, and reports whether
// there is to be one: not when the pause would pass ctx's deadline or
// until.
func (c *Client) pauseBeforeRetry(ctx context.Context, until time.Time, backoff *time.Duration) bool {
	pause := retry.Jitter(*backoff)
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < pause {
		return false
	}
	if !until.IsZero() && time.Now().Add(pause).After(until) {
		return false
	}
	if !wait.Sleep(ctx, pause) {
		return false
	}
	*backoff = min(2**backoff, maxBackoff)
	return true
}

// reject counts n entries rejected for err, keeping the first reason, and
// reports the request done with.
func (res *Result) reject(n int, err error) bool {
	res.Rejected += n
	res.Err = err
	if res.RejectErr == nil {
		res.RejectErr = err
	}
	return true
}

// failure says why a request failed that may be tried again.
func (c *Client) failure(a answer) error {
	switch {
	case a.err != nil:
		return a.err
	case a.status == http.StatusProxyAuthRequired:
		return fmt.Errorf("pushing to %s: the proxy answered %d: %s", c.ep().redacted, a.status, shortMessage(a.msg))
	}
	return fmt.Errorf("pushing to %s: Loki answered %d: %s", c.ep().redacted, a.status, shortMessage(a.msg))
}

// rejection says why Loki's answer rejects a whole request.
func (c *Client) rejection(a answer) error {
	switch {
	case a.err != nil:
		return a.err
	case a.status >= 300 && a.status < 400:
		// A redirect is a wrong push URL; following it would re-send a
		// POST body to wherever it points, and retrying cannot help.
		return fmt.Errorf("pushing to %s: Loki answered %d, a redirect to %s: the push URL must be the final one",
			c.ep().redacted, a.status, redactLocation(a.header.Get("Location")))
	default:
		return fmt.Errorf("pushing to %s: Loki rejected the push (%d): %s", c.ep().redacted, a.status, shortMessage(a.msg))
	}
}

// refusedInPart counts a 400 that refused some of a request's n entries:
// Loki stores the valid ones.
func (c *Client) refusedInPart(n int, msg string, res *Result) bool {
	refused, known := refusedCount(msg, n)
	if !known {
		res.Unconfirmed += n
		return res.reject(0, fmt.Errorf("pushing to %s: Loki refused part of a push of %d lines without saying how many (it stores the valid ones): %s",
			c.ep().redacted, n, shortMessage(msg)))
	}
	res.Delivered += n - refused
	return res.reject(refused, fmt.Errorf("pushing to %s: Loki rejected %d of %d lines (400): %s", c.ep().redacted, refused, n, shortMessage(msg)))
}

// refusedMetadata reports whether a 4xx answer to a request that carried
// structured metadata is Loki refusing it. If so, the client sends none from
// then on, and the first time it records Loki's answer in res.
//
// Loki 3 answers 400 "stream '{…}' includes structured metadata, but this
// feature is disallowed. Please see `limits_config.allow_structured_metadata`
// …", once per stream, Loki 2.9 the same; Loki 2.8 and older do not know
// the field and ignore it.
func (c *Client) refusedMetadata(status int, msg string, res *Result) bool {
	if status != http.StatusBadRequest || !strings.Contains(msg, "structured metadata") ||
		!(strings.Contains(msg, "disallowed") || strings.Contains(msg, "not allowed") || strings.Contains(msg, "not enabled")) {
		return false
	}
	if c.metadataRefused.CompareAndSwap(false, true) {
		res.MetadataRefused = fmt.Errorf("pushing to %s: Loki refused structured metadata (400: %s); pushing without it from now on",
			c.ep().redacted, shortMessage(msg))
	}
	return true
}

// errBuildRequest marks a request that could not even be built.
var errBuildRequest = errors.New("building the request failed")

func (c *Client) send(ctx context.Context, body []byte) answer {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	ep := c.ep()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.url, bytes.NewReader(body))
	if err != nil {
		return answer{err: fmt.Errorf("pushing to %s: %w", c.ep().redacted, errBuildRequest)}
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "grafana-loki-extension")
	if ep.auth != "" {
		req.Header.Set("Authorization", ep.auth)
	}
	if c.cfg.TenantID != "" {
		req.Header.Set("X-Scope-OrgID", c.cfg.TenantID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error repeats the URL, which is already free of userinfo;
		// keep only the cause, described in our own words.
		return answer{err: fmt.Errorf("pushing to %s: %w", c.ep().redacted, httperr.Cause(err))}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64*1024)) // lets the connection be reused
	return answer{status: resp.StatusCode, header: resp.Header, msg: strings.TrimSpace(string(data))}
}
