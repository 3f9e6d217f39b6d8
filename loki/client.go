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
	"strconv"
	"strings"
	"sync"
	"time"
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
	// RequestTimeout bounds one HTTP request (default 2 s).
	RequestTimeout time.Duration
	// MaxLineBytes is the longest line pushed; longer ones are truncated
	// with a marker (default just under Loki's 256 KiB).
	MaxLineBytes int
	// MaxRequestBytes bounds one push request (default 1 MiB).
	MaxRequestBytes int
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

// Defaults for Config's zero values.
const (
	DefaultRequestTimeout  = 2 * time.Second
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
	// Undelivered entries could not be delivered before the context ended;
	// the caller keeps them for the next window. Sending them again is safe:
	// Loki ignores exact duplicates.
	Undelivered []Entry
	// Requests and Retries count HTTP requests.
	Requests, Retries int
	// Err is the last error, nil when everything was delivered. It never
	// contains credentials.
	Err error
	// RejectErr says why the first rejected entries were rejected (Loki's
	// answer), so that a later transient error does not hide it.
	RejectErr error
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
}

type levelKey struct {
	stream StreamType
	level  string
}

// New validates cfg and returns a client. Errors name the setting at fault.
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
	for name := range cfg.Labels {
		if err := ValidateLabelName(name); err != nil {
			return nil, fmt.Errorf("LOKI_LABELS: %w", err)
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
			pool, err := loadCAs(cfg.CAFile)
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

func loadCAs(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("LOKI_CA_FILE: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("LOKI_CA_FILE: %s holds no PEM certificate", file)
	}
	return pool, nil
}

// setCredentials sets the push URL and the Authorization header. Userinfo
// in the URL is basic auth unless a username is given.
func (c *Client) setCredentials(cr Credentials) error {
	u, err := url.Parse(cr.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("LOKI_URL: want an http or https URL with a host")
	}
	if u.User != nil {
		if cr.Username == "" {
			cr.Username = u.User.Username()
			cr.Password, _ = u.User.Password()
		}
		u.User = nil
	}
	c.url, c.redacted = u.String(), u.Redacted()
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

// ValidateLabelName checks a label name against Loki's rules.
func ValidateLabelName(name string) error {
	if name == "" {
		return errors.New("label name is empty")
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
	var res Result
	for i := range entries {
		line, truncated := sanitizeLine(entries[i].Line, c.cfg.MaxLineBytes)
		if truncated {
			res.Truncated++
		}
		entries[i].Line = line
	}
	for start := 0; start < len(entries); {
		end, size := start, 0
		for end < len(entries) && (end == start || size+entries[end].Size() <= c.cfg.MaxRequestBytes) {
			size += entries[end].Size()
			end++
		}
		if !c.pushRequest(ctx, entries[start:end], &res) {
			res.Undelivered = entries[start:]
			return res
		}
		start = end
	}
	return res
}

// pushRequest sends one request, retrying while ctx allows. It returns false
// when the entries were neither delivered nor rejected.
func (c *Client) pushRequest(ctx context.Context, entries []Entry, res *Result) bool {
	body := c.enc.encode(entries, c.labelsFor)
	backoff := minBackoff
	// lastErr becomes the result's error only if the request ends undelivered:
	// a transient failure followed by success is no error.
	var lastErr error
	reauthed := false
	giveUp := func() bool {
		if lastErr == nil {
			lastErr = fmt.Errorf("pushing to %s: %w", c.redacted, ctx.Err())
		}
		res.Err = lastErr
		return false
	}
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return giveUp()
		}
		if attempt > 0 {
			res.Retries++
		}
		res.Requests++
		status, header, msg, err := c.send(ctx, body)
		switch {
		case err == nil && status >= 200 && status < 300:
			res.Delivered += len(entries)
			return true
		case err == nil && status >= 300 && status < 400:
			// A redirect is a wrong LOKI_URL; following it would re-send a
			// POST body to wherever it points, and retrying cannot help.
			res.Rejected += len(entries)
			res.Err = fmt.Errorf("pushing to %s: Loki answered %d, a redirect to %s: set LOKI_URL to the final push URL",
				c.redacted, status, redactURL(header.Get("Location")))
			if res.RejectErr == nil {
				res.RejectErr = res.Err
			}
			return true
		case err == nil && (status == http.StatusUnauthorized || status == http.StatusForbidden) && !reauthed && c.reauth(ctx):
			// New credentials (a rotated secret): try them at once, once.
			reauthed = true
			continue
		case err == nil && status >= 400 && status < 500 && status != http.StatusTooManyRequests && status != http.StatusRequestTimeout:
			rejected := rejectedCount(status, msg, len(entries))
			res.Rejected += rejected
			res.Delivered += len(entries) - rejected
			res.Err = c.rejectionError(status, shortMessage(msg))
			if res.RejectErr == nil {
				res.RejectErr = res.Err
			}
			return true
		case err != nil:
			// An attempt cut short by the window's end says less than the
			// failure before it (connection refused, say): keep that one.
			if ctx.Err() == nil || lastErr == nil {
				lastErr = err
			}
		default:
			lastErr = fmt.Errorf("pushing to %s: Loki answered %d: %s", c.redacted, status, shortMessage(msg))
		}
		wait := jitter(backoff)
		if ra := retryAfter(header); ra > wait {
			wait = ra
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return giveUp()
		}
		if !sleep(ctx, wait) {
			return giveUp()
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// maxMessage bounds how much of Loki's answer is kept for the log;
// maxAnswer bounds how much is read: a 400 lists every entry it ignored
// and ends with the count ("total ignored: N out of M") that says how many
// of the push were rejected.
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

func (c *Client) send(ctx context.Context, body []byte) (status int, header http.Header, msg string, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, "", fmt.Errorf("pushing to %s: building request failed", c.redacted)
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

func (c *Client) rejectionError(status int, msg string) error {
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		return fmt.Errorf("pushing to %s: authentication failed (%d %s): check LOKI_USERNAME, LOKI_PASSWORD, LOKI_BEARER_TOKEN and LOKI_TENANT_ID",
			c.redacted, status, msg)
	}
	return fmt.Errorf("pushing to %s: Loki rejected the push (%d): %s", c.redacted, status, msg)
}

// totalIgnored is compiled on first use, not at start: compiling costs about
// half a millisecond of the extension's init, which is billed and delays the
// function's cold start, for a pattern only a 400 answer needs.
var totalIgnored = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`total ignored: (\d+) out of (\d+)`)
})

// rejectedCount reads how many entries of a 400 Loki refused: it stores the
// valid entries of a push and says "total ignored: N out of M" per stream.
func rejectedCount(status int, msg string, n int) int {
	if status != http.StatusBadRequest {
		return n
	}
	matches := totalIgnored().FindAllStringSubmatch(msg, -1)
	if len(matches) == 0 {
		return n
	}
	ignored := 0
	for _, m := range matches {
		v, _ := strconv.Atoi(m[1])
		ignored += v
	}
	return min(ignored, n)
}

func retryAfter(h http.Header) time.Duration {
	if h == nil {
		return 0
	}
	if secs, err := strconv.Atoi(h.Get("Retry-After")); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	return 0
}

// jitter spreads retries between half and all of d, so that many sandboxes
// do not retry in step.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
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

// redactURL makes a URL from an answer (a redirect's Location) safe to log:
// no password, no query string (which may hold a token).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		return "an unreadable location"
	}
	u.RawQuery, u.Fragment = "", ""
	return u.Redacted()
}
