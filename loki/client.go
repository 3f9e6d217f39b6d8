package loki

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
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

// Client pushes entries to Loki. Pushes may run on several goroutines at
// once (the SHUTDOWN drain keeps a few requests in flight).
type Client struct {
	cfg Config
	// endpoint is where and how requests go; a rotated credential replaces
	// it while the SHUTDOWN drain's requests may be reading it.
	endpoint  atomic.Pointer[endpoint]
	http      *http.Client
	transport *http.Transport // nil when Config.Transport was given

	streamLabels [3]string // per StreamType, without level
	levelMu      sync.Mutex
	levelLabels  map[levelKey]string

	// encoders build request bodies, one per push running at once, so
	// that the drain's requests in flight are encoded on every core.
	encoders sync.Pool
	// metadataRefused is set once Loki has refused structured metadata; it
	// is never cleared, as a Loki's limits do not change under a sandbox.
	metadataRefused atomic.Bool
}

// endpoint is the push URL and the Authorization header of a Client.
type endpoint struct {
	url      string // without userinfo
	redacted string // for messages
	auth     string // Authorization header value, or ""
}

// ep is the client's endpoint now.
func (c *Client) ep() *endpoint { return c.endpoint.Load() }

// encode builds a request body with an encoder of the pool.
func (c *Client) encode(entries []Entry, meta metaFields) []byte {
	enc, _ := c.encoders.Get().(*encoder)
	if enc == nil {
		enc = &encoder{}
	}
	defer c.encoders.Put(enc)
	return enc.encode(entries, c.labelsFor, meta)
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
	ep := &endpoint{url: u.String(), redacted: redactURL(u)}
	switch {
	case cr.BearerToken != "":
		ep.auth = "Bearer " + cr.BearerToken
	case cr.Username != "" || cr.Password != "":
		ep.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(cr.Username+":"+cr.Password))
	}
	c.endpoint.Store(ep)
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
