package loki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/lambda-loki/grafana-loki-extension/internal/wait"
)

// Config configures a Client. Zero values take the documented defaults.
type Config struct {
	// URL is the full push URL, http or https, e.g.
	// https://logs-prod-012.grafana.net/loki/api/v1/push. Userinfo in it is
	// used as basic auth and never shown.
	URL string
	// Labels are put on every stream (source, function, user labels).
	Labels map[string]string
	// LevelLabel adds level="<Entry.Level>" for entries that have a level.
	LevelLabel bool
	// Username and Password are HTTP basic auth credentials.
	Username, Password string
	// BearerToken is sent as Authorization: Bearer.
	BearerToken string
	// TenantID is sent as X-Scope-OrgID.
	TenantID string
	// CAFile is a PEM bundle of CAs to trust besides the system's.
	CAFile string
	// RequestTimeout bounds one HTTP request (DefaultRequestTimeout).
	RequestTimeout time.Duration
	// MaxLineBytes is the longest line pushed; longer ones are truncated
	// with a marker (default just under Loki's 256 KiB).
	MaxLineBytes int
	// MaxRequestBytes bounds one push request (default 1 MiB).
	MaxRequestBytes int
	// NoStructuredMetadata sends entries without structured metadata
	// (request_id, trace_id, level). By default it is sent, and the client
	// stops sending it by itself once Loki refuses it.
	NoStructuredMetadata bool
	// Transport replaces the HTTP transport, for tests.
	Transport http.RoundTripper
	// Reauth, when set, is asked for new credentials when Loki answers 401
	// or 403: they may have been rotated where they are kept. It reports
	// false when it has nothing new (it decides how often to look);
	// otherwise the request is retried at once with what it returned.
	// It runs inside Push.
	Reauth func(ctx context.Context) (Credentials, bool)
}

// Credentials are the settings that authenticate a push, as in Config.
type Credentials struct {
	URL, Username, Password, BearerToken string
}

// Defaults for Config's zero values: a request timeout short against a
// function's deadline, lines just under Loki's default max_line_size of
// 256 KiB, and requests of the size Loki handles best (a push over about
// 4 MiB exceeds its internal message limit).
const (
	DefaultRequestTimeout  = 1500 * time.Millisecond
	DefaultMaxLineBytes    = 256*1024 - 1024
	DefaultMaxRequestBytes = 1024 * 1024
)

// Backoff between retries: doubling from minBackoff to maxBackoff, with
// jitter, for as long as the caller's context allows.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 1 * time.Second
)

// Result says what happened to the entries given to Push.
type Result struct {
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
	// Requests and Retries count HTTP requests.
	Requests, Retries int
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

// Client pushes entries to Loki. Push is meant for one goroutine at a time;
// CloseIdleConnections may be called from any.
type Client struct {
	cfg       Config
	url       string // without userinfo
	redacted  string // for messages
	auth      string // Authorization header value, or ""
	http      *http.Client
	transport *http.Transport // nil when Config.Transport was given

	streamLabels [3]string // per StreamType, without level
	levelMu      sync.Mutex
	levelLabels  map[levelKey]string

	enc encoder
	// metadataRefused is set once Loki has refused structured metadata; it
	// is never cleared, as a Loki's limits do not change under a sandbox.
	metadataRefused atomic.Bool
}

type levelKey struct {
	stream StreamType
	level  string
}

// ErrUnauthorized marks a push Loki (or a gateway in front of it) refused
// with 401 or 403: the credentials or the tenant are wrong, or rotated.
var ErrUnauthorized = errors.New("authentication failed")

// New validates cfg and returns a client. Its errors say which setting is
// wrong and never repeat a credential; naming the environment variable is
// the caller's business.
func New(cfg Config) (*Client, error) {
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.MaxLineBytes <= 0 {
		cfg.MaxLineBytes = DefaultMaxLineBytes
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	c := &Client{cfg: cfg, levelLabels: map[levelKey]string{}}
	if err := c.setCredentials(Credentials{URL: cfg.URL, Username: cfg.Username, Password: cfg.Password, BearerToken: cfg.BearerToken}); err != nil {
		return nil, err
	}
	if err := ValidateHeaderValue(cfg.TenantID); err != nil {
		return nil, fmt.Errorf("tenant ID: %w", err)
	}
	for name, value := range cfg.Labels {
		if err := ValidateLabel(name, value); err != nil {
			return nil, fmt.Errorf("labels: %w", err)
		}
	}
	for _, s := range []StreamType{StreamFunction, StreamPlatform, StreamExtension} {
		c.streamLabels[s] = c.buildLabels(s, "")
	}

	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 4
		t.IdleConnTimeout = 60 * time.Second
		if cfg.CAFile != "" {
			pool, err := LoadCAs(cfg.CAFile)
			if err != nil {
				return nil, err
			}
			t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		c.transport = t
		rt = t
	}
	// Redirects would resend the body and the credentials elsewhere.
	c.http = &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return c, nil
}

// ParsePushURL checks a push URL: http or https, with a host and a numeric
// port if any, and nothing after the host that looks like misplaced
// credentials. Its errors never repeat the URL, which may hold a password
// or a token.
func ParsePushURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		// url's error repeats the input.
		return nil, errors.New("not a valid URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("scheme must be http or https, got %q", u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("has no host")
	case strings.Contains(u.Host+u.Path+u.RawQuery+u.Fragment, "@"):
		// https://user:pa/ss@host parses as host "user:pa" and path
		// "/ss@host": the password would be sent in the path, and logged.
		return nil, errors.New("holds an '@' after the host: percent-encode '/', '?', '#' and '@' in a user name or password (%2F, %3F, %23, %40), or give the credentials in their own settings")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, errors.New("has a port that is not a number from 1 to 65535")
		}
	}
	return u, nil
}

// ValidateHeaderValue checks that v can be sent as an HTTP header value:
// a newline or another control character would make every request fail to
// be built.
func ValidateHeaderValue(v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return fmt.Errorf("holds a control character at byte %d (a newline, perhaps), which an HTTP header cannot carry", i)
		}
	}
	return nil
}

// LoadCAs returns the system's certificate pool with the PEM certificates of
// file added.
func LoadCAs(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading the CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("the CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// setCredentials sets the push URL and the Authorization header. Userinfo
// in the URL is basic auth unless a username or a token is given. Its
// errors never repeat a credential.
func (c *Client) setCredentials(cr Credentials) error {
	u, err := ParsePushURL(cr.URL)
	if err != nil {
		return fmt.Errorf("push URL: %w", err)
	}
	if u.User != nil {
		if cr.Username == "" && cr.BearerToken == "" {
			cr.Username = u.User.Username()
			cr.Password, _ = u.User.Password()
		}
		u.User = nil
	}
	if err := ValidateHeaderValue(cr.BearerToken); err != nil {
		return fmt.Errorf("bearer token: %w", err)
	}
	c.url, c.redacted = u.String(), redactURL(u)
	switch {
	case cr.BearerToken != "":
		c.auth = "Bearer " + cr.BearerToken
	case cr.Username != "" || cr.Password != "":
		c.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(cr.Username+":"+cr.Password))
	default:
		c.auth = ""
	}
	return nil
}

// reauth asks Config.Reauth for new credentials and takes them.
func (c *Client) reauth(ctx context.Context) bool {
	if c.cfg.Reauth == nil {
		return false
	}
	cr, ok := c.cfg.Reauth(ctx)
	return ok && c.setCredentials(cr) == nil
}

// CloseIdleConnections drops kept-alive connections, which do not survive a
// long freeze or a SnapStart restore; the next push dials again.
func (c *Client) CloseIdleConnections() {
	if c.transport != nil {
		c.transport.CloseIdleConnections()
	}
}

// Loki's default limits on a label (max_label_name_length and
// max_label_value_length): a longer one makes Loki refuse every push.
const (
	MaxLabelNameLength  = 1024
	MaxLabelValueLength = 2048
)

// ValidateLabel checks a label's name and value against Loki's rules and
// default limits.
func ValidateLabel(name, value string) error {
	if err := ValidateLabelName(name); err != nil {
		return err
	}
	if len(value) > MaxLabelValueLength {
		return fmt.Errorf("label %q: value of %d bytes is longer than Loki's limit of %d", name, len(value), MaxLabelValueLength)
	}
	if !utf8.ValidString(value) {
		return fmt.Errorf("label %q: value is not valid UTF-8", name)
	}
	return nil
}

// ValidateLabelName checks a label name against Loki's rules.
func ValidateLabelName(name string) error {
	if name == "" {
		return errors.New("label name is empty")
	}
	if len(name) > MaxLabelNameLength {
		return fmt.Errorf("label name of %d bytes is longer than Loki's limit of %d", len(name), MaxLabelNameLength)
	}
	if strings.HasPrefix(name, "__") {
		return fmt.Errorf("label name %q: names starting with __ are reserved", name)
	}
	for i, r := range name {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return fmt.Errorf("label name %q must match [a-zA-Z_][a-zA-Z0-9_]*", name)
		}
	}
	return nil
}

// Push sends entries to Loki, splitting them into requests of a bounded size,
// retrying what can be retried until ctx ends. It modifies entries' lines in
// place when they need truncation or UTF-8 repair.
func (c *Client) Push(ctx context.Context, entries []Entry) Result {
	return c.PushRetrying(ctx, entries, time.Time{})
}

// PushRetrying is Push with a bound on its retries: no retry starts after
// until (zero leaves only ctx), and no request is cut short by it. A
// background push gives it the end of its budget, so that a request in
// flight is never cut (one cut short may have been stored all the same);
// an outage's attempt gives it the present, so that the attempt is one
// request and the outage's backoff its only pace.
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
	body := c.enc.encode(entries, c.labelsFor, meta)
	backoff := minBackoff
	// lastErr becomes the result's error only if the request ends undelivered:
	// a transient failure followed by success is no error.
	var lastErr error
	reauthed := false
	giveUp := func() bool {
		res.TimedOut = errors.Is(lastErr, context.DeadlineExceeded) || lastErr == nil
		switch {
		case lastErr == nil:
			lastErr = fmt.Errorf("pushing to %s: %w", c.redacted, ctx.Err())
		case errors.Is(lastErr, context.Canceled) && errors.Is(ctx.Err(), context.Canceled):
			// The caller called the request off (SHUTDOWN stops the
			// background pushes): that says nothing of Loki.
		default:
			res.Unavailable = true
		}
		res.Err = lastErr
		return false
	}
	reject := func(n int, err error) bool {
		res.Rejected += n
		res.Err = err
		if res.RejectErr == nil {
			res.RejectErr = err
		}
		return true
	}
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return giveUp()
		}
		if attempt > 0 {
			res.Retries++
		}
		res.Requests++
		sent := time.Now()
		status, header, msg, err := c.send(ctx, body)
		res.Stalled = err != nil && time.Since(sent) > c.cfg.RequestTimeout+max(c.cfg.RequestTimeout/2, stallMargin)
		res.RetryAfter = retryAfter(header)
		switch {
		case errors.Is(err, errBuildRequest):
			// Retrying cannot build it either.
			return reject(len(entries), err)
		case err == nil && status >= 200 && status < 300:
			res.Delivered += len(entries)
			return true
		case err == nil && status >= 300 && status < 400:
			// A redirect is a wrong push URL; following it would re-send a
			// POST body to wherever it points, and retrying cannot help.
			return reject(len(entries), fmt.Errorf("pushing to %s: Loki answered %d, a redirect to %s: the push URL must be the final one",
				c.redacted, status, redactLocation(header.Get("Location"))))
		case err == nil && (status == http.StatusUnauthorized || status == http.StatusForbidden) && !reauthed && c.reauth(ctx):
			// New credentials (a rotated secret): try them at once, once.
			reauthed = true
			continue
		case err == nil && (status == http.StatusUnauthorized || status == http.StatusForbidden):
			return reject(len(entries), fmt.Errorf("pushing to %s: %w (%d %s)", c.redacted, ErrUnauthorized, status, shortMessage(msg)))
		case err == nil && status == http.StatusBadRequest:
			if meta != 0 && c.refusedMetadata(status, msg, res) {
				// Loki stored the entries that had none; sending those
				// again is harmless, as it drops exact duplicates of its
				// newest entries.
				meta = 0
				body = c.enc.encode(entries, c.labelsFor, meta)
				continue
			}
			refused, known := refusedCount(msg, len(entries))
			if !known {
				res.Unconfirmed += len(entries)
				return reject(0, fmt.Errorf("pushing to %s: Loki refused part of a push of %d lines without saying how many (it stores the valid ones): %s",
					c.redacted, len(entries), shortMessage(msg)))
			}
			res.Delivered += len(entries) - refused
			return reject(refused, fmt.Errorf("pushing to %s: Loki rejected %d of %d lines (400): %s", c.redacted, refused, len(entries), shortMessage(msg)))
		case err == nil && status == http.StatusProxyAuthRequired:
			// A forward proxy (HTTP_PROXY) refusing the request is an outage
			// on the way to Loki, not Loki refusing the lines.
			lastErr = fmt.Errorf("pushing to %s: the proxy answered %d: %s", c.redacted, status, shortMessage(msg))
		case err == nil && status >= 400 && status < 500 && status != http.StatusTooManyRequests && status != http.StatusRequestTimeout:
			return reject(len(entries), fmt.Errorf("pushing to %s: Loki rejected the push (%d): %s", c.redacted, status, shortMessage(msg)))
		case err != nil:
			// An attempt cut short by the window's end says less than the
			// failure before it (connection refused, say): keep that one.
			if ctx.Err() == nil || lastErr == nil {
				lastErr = err
			}
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				// The request's own timeout: Loki hangs. Another attempt
				// would most likely hang as long, so the window ends here.
				return giveUp()
			}
		default:
			lastErr = fmt.Errorf("pushing to %s: Loki answered %d: %s", c.redacted, status, shortMessage(msg))
		}
		if res.RetryAfter > 0 {
			// Loki asked for a pause: the caller schedules the next attempt
			// (Result.RetryAfter) rather than spending its budget asleep.
			return giveUp()
		}
		pause := jitter(backoff)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < pause {
			return giveUp()
		}
		if !until.IsZero() && time.Now().Add(pause).After(until) {
			return giveUp()
		}
		if !wait.Sleep(ctx, pause) {
			return giveUp()
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// metadata returns the structured metadata to send: none once Loki refused
// it or when configured so; otherwise all of it, except level when it is
// already a stream label.
func (c *Client) metadata() metaFields {
	if c.cfg.NoStructuredMetadata || c.metadataRefused.Load() {
		return 0
	}
	if c.cfg.LevelLabel {
		return metaAll &^ metaLevel
	}
	return metaAll
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
			c.redacted, shortMessage(msg))
	}
	return true
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

// errBuildRequest marks a request that could not even be built.
var errBuildRequest = errors.New("building the request failed")

func (c *Client) send(ctx context.Context, body []byte) (status int, header http.Header, msg string, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, "", fmt.Errorf("pushing to %s: %w", c.redacted, errBuildRequest)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("User-Agent", "grafana-loki-extension")
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	if c.cfg.TenantID != "" {
		req.Header.Set("X-Scope-OrgID", c.cfg.TenantID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// url.Error repeats the URL, which is already free of userinfo;
		// keep only the cause, described in our own words.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return 0, nil, "", fmt.Errorf("pushing to %s: %w", c.redacted, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64*1024)) // lets the connection be reused
	return resp.StatusCode, resp.Header, strings.TrimSpace(string(data)), nil
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

// jitter spreads retries between half and all of d, so that many sandboxes
// do not retry in step.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// labelsFor returns the label string of an entry's stream, built once.
func (c *Client) labelsFor(e *Entry) string {
	if !c.cfg.LevelLabel || e.Level == "" {
		return c.streamLabels[e.Stream%3]
	}
	key := levelKey{e.Stream, e.Level}
	c.levelMu.Lock()
	defer c.levelMu.Unlock()
	s, ok := c.levelLabels[key]
	if !ok {
		// A function could invent levels without end; keep the cache small.
		if len(c.levelLabels) > 64 {
			clear(c.levelLabels)
		}
		s = c.buildLabels(e.Stream, strings.ToLower(e.Level))
		c.levelLabels[key] = s
	}
	return s
}

func (c *Client) buildLabels(s StreamType, level string) string {
	labels := make(map[string]string, len(c.cfg.Labels)+2)
	for k, v := range c.cfg.Labels {
		labels[k] = v
	}
	if s != StreamFunction {
		labels["type"] = s.String()
	}
	if level != "" {
		labels["level"] = level
	}
	return FormatLabels(labels)
}

// redactURL is the push URL as messages show it: scheme, host and path;
// no user info, query or fragment, which may hold a token.
func redactURL(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return r.String()
}

// redactLocation makes a URL from an answer (a redirect's Location) safe
// to log.
func redactLocation(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		return "an unreadable location"
	}
	return redactURL(u)
}
