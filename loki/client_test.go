package loki

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lambda-loki/grafana-loki-extension/internal/fakeloki"
)

// pushAll pushes entries with no bound on retries but ctx's.
func pushAll(c *Client, ctx context.Context, entries []Entry) Result {
	return c.PushRetrying(ctx, entries, time.Time{})
}

func newClient(t *testing.T, f http.Handler, mod func(*Config)) (*Client, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cfg := Config{URL: srv.URL + "/api/prom/push", Labels: map[string]string{"source": "lambda", "function": "fn"}, RequestTimeout: 200 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, srv
}

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 123456789, time.UTC)

func TestPushGroupsSortsAndKeepsTimestamps(t *testing.T) {
	f := &fakeloki.Loki{}
	c, _ := newClient(t, f, func(cfg *Config) { cfg.LevelLabel = true })
	res := pushAll(c, t.Context(), []Entry{
		{Time: t0.Add(2), Line: "second"},
		{Time: t0.Add(1), Line: "first"},
		{Time: t0, Line: "REPORT", Stream: StreamPlatform},
		{Time: t0, Line: `{"level":"ERROR"}`, Level: "ERROR"},
		{Time: t0, Line: "ext", Stream: StreamExtension},
	})
	if res.Err != nil || res.Delivered != 5 || res.Requests != 1 {
		t.Fatalf("%+v", res)
	}
	got := f.Lines()
	want := map[string][]string{
		`{function="fn", source="lambda"}`:                   {"first", "second"},
		`{function="fn", source="lambda", type="platform"}`:  {"REPORT"},
		`{function="fn", source="lambda", type="extension"}`: {"ext"},
		`{function="fn", level="error", source="lambda"}`:    {`{"level":"ERROR"}`},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("streams\n%v\nwant\n%v", got, want)
	}
	ts := f.Entries(`{function="fn", source="lambda"}`)[0].Timestamp
	if !ts.Equal(t0.Add(1)) {
		t.Fatalf("timestamp %v, want %v", ts, t0.Add(1))
	}
	if h := f.Pushes()[0].Header; h.Get("Content-Type") != "application/x-protobuf" || h.Get("Authorization") != "" || h.Get("X-Scope-OrgID") != "" {
		t.Fatalf("headers %v", h)
	}
}

func TestFormatLabelsEscapes(t *testing.T) {
	got := FormatLabels(map[string]string{"b": `say "hi"\n`, "a": "line\nbreak", "c": "ünï"})
	if want := `{a="line\nbreak", b="say \"hi\"\\n", c="ünï"}`; got != want {
		t.Fatalf("got %s want %s", got, want)
	}
}

func TestPushSplitsLargeBatches(t *testing.T) {
	f := &fakeloki.Loki{}
	c, _ := newClient(t, f, func(cfg *Config) { cfg.MaxRequestBytes = 64 * 1024 })
	entries := make([]Entry, 1000)
	for i := range entries {
		entries[i] = Entry{Time: t0.Add(time.Duration(i)), Line: strings.Repeat("x", 500)}
	}
	res := pushAll(c, t.Context(), entries)
	if res.Delivered != 1000 || res.Requests < 8 {
		t.Fatalf("%+v", res)
	}
	for _, p := range f.Pushes() {
		if p.Size > 64*1024+1024 {
			t.Fatalf("a request of %d bytes", p.Size)
		}
	}
	if n := len(f.Lines()[`{function="fn", source="lambda"}`]); n != 1000 {
		t.Fatalf("%d lines arrived", n)
	}
}

func TestSanitizeLine(t *testing.T) {
	tests := []struct {
		name          string
		line          string
		max           int
		wantTruncated bool
		wantPrefix    string
	}{
		{"short line untouched", "hello", 100, false, "hello"},
		{"invalid UTF-8 repaired", "a\xffb", 100, false, "a\uFFFDb"},
		{"long ASCII line cut with marker", strings.Repeat("a", 5000), 1000, true, "aaaa"},
		{"cut never splits a 3-byte character", strings.Repeat("€", 2000), 1000, true, "€€€"},
		{"cut never splits a 4-byte character", strings.Repeat("😀", 2000), 1001, true, "😀😀"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, truncated := sanitizeLine(tt.line, tt.max)
			if truncated != tt.wantTruncated || !strings.HasPrefix(got, tt.wantPrefix) || !utf8.ValidString(got) || len(got) > tt.max {
				t.Fatalf("truncated %v, %d bytes, valid %v: %.60q", truncated, len(got), utf8.ValidString(got), got)
			}
			if truncated && !strings.Contains(got, " …[truncated ") {
				t.Fatalf("no marker: %q", got[len(got)-40:])
			}
		})
	}
}

func TestPushTruncatesGiantLineWithoutFailingTheBatch(t *testing.T) {
	f := &fakeloki.Loki{}
	c, _ := newClient(t, f, nil)
	res := pushAll(c, t.Context(), []Entry{{Time: t0, Line: "small"}, {Time: t0.Add(1), Line: strings.Repeat("z", 1<<20)}})
	if res.Delivered != 2 || res.Truncated != 1 {
		t.Fatalf("%+v", res)
	}
	lines := f.Lines()[`{function="fn", source="lambda"}`]
	var cut int
	marker := lines[1][strings.LastIndex(lines[1], " …[truncated "):]
	if _, err := fmt.Sscanf(marker, " …[truncated %d bytes]", &cut); err != nil {
		t.Fatalf("no marker at the end: %q", marker)
	}
	if len(lines[1]) > DefaultMaxLineBytes || len(lines[1])-len(marker)+cut != 1<<20 || lines[0] != "small" {
		t.Fatalf("line of %d bytes, marker %q", len(lines[1]), marker)
	}
}

func status(code int, body string, header ...string) func(int, http.ResponseWriter) bool {
	return func(_ int, w http.ResponseWriter) bool {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
		return true
	}
}

func TestPushOutcomes(t *testing.T) {
	tests := []struct {
		name          string
		respond       func(int, http.ResponseWriter) bool
		wantDelivered int
		wantRejected  int
		wantUndeliv   int
		wantErr       string
		minRequests   int
	}{
		{"204 stored", nil, 3, 0, 0, "", 1},
		{"400 with total ignored: the valid entries are stored", status(400, "entry for stream '{a=\"b\"}' has timestamp too old\nuser 'fake', total ignored: 1 out of 3 for stream: {a=\"b\"}"), 2, 1, 0, "total ignored", 1},
		{"400 refusing a stream without a count: not claimed either way", status(400, "stream '{a=\"b\"}' has label value too long"), 0, 0, 0, "without saying how many", 1},
		{"400 for one entry (Loki 3): one refused, the rest stored", status(400, "max entry size '262144' bytes exceeded for stream '{a=\"b\"}' while adding an entry with length '307200' bytes"), 2, 1, 0, "rejected 1 of 3", 1},
		{"400 for several entries (Loki 3): counted from its answer", status(400, "1 errors like: max entry size '262144' bytes exceeded for stream '{a=\"b\"}'; 1 errors like: entry for stream '{a=\"b\"}' has timestamp too new"), 1, 2, 0, "rejected 2 of 3", 1},
		{"401 is an auth failure, not retried", status(401, "no org id"), 0, 3, 0, "authentication failed (401 no org id)", 1},
		{"403 is an auth failure", status(403, "forbidden"), 0, 3, 0, "authentication failed (403 forbidden)", 1},
		{"413 rejected", status(413, "too large"), 0, 3, 0, "413", 1},
		{"500 forever: undelivered at the deadline", status(500, "internal"), 0, 0, 3, "500", 2},
		{"429 forever: undelivered", status(429, "rate limited"), 0, 0, 3, "429", 2},
		{"503 every other request: delivered after a retry", func(n int, w http.ResponseWriter) bool {
			if n%2 == 0 {
				w.WriteHeader(503)
				return true
			}
			return false
		}, 3, 0, 0, "", 2},
		{"400 whose count follows a long list: the count is still read", status(400, strings.Repeat("entry for stream '{a=\"b\"}' has timestamp too old\n", 100)+"user 'fake', total ignored: 2 out of 3 for stream: {a=\"b\"}"), 1, 2, 0, "total ignored: 2", 1},
		{"301 redirect: a wrong push URL, not retried", func(_ int, w http.ResponseWriter) bool {
			w.Header().Set("Location", "https://user:pw@loki.example.com/loki/api/v1/push?token=x")
			w.WriteHeader(301)
			return true
		}, 0, 3, 0, "redirect to https://loki.example.com/loki/api/v1/push: the push URL", 1},
		{"hanging Loki: request timeout, then undelivered", func(int, http.ResponseWriter) bool { time.Sleep(2 * time.Second); return true }, 0, 0, 3, "deadline exceeded", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeloki.Loki{Respond: tt.respond}
			c, _ := newClient(t, f, nil)
			ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
			defer cancel()
			start := time.Now()
			res := pushAll(c, ctx, []Entry{{Time: t0, Line: "a"}, {Time: t0, Line: "b"}, {Time: t0, Line: "c"}})
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("push took %s, past its deadline", took)
			}
			if res.Delivered != tt.wantDelivered || res.Rejected != tt.wantRejected || len(res.Undelivered) != tt.wantUndeliv || res.Requests < tt.minRequests ||
				res.Delivered+res.Rejected+res.Unconfirmed+len(res.Undelivered) != 3 {
				t.Fatalf("%+v", res)
			}
			if tt.wantErr == "" && res.Err != nil || tt.wantErr != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tt.wantErr)) {
				t.Fatalf("err %v, want %q", res.Err, tt.wantErr)
			}
		})
	}
}

// A Retry-After is not slept through inside the caller's budget: the push
// gives up at once and says how long Loki asked for, so that the caller
// schedules the next attempt without spending billed time asleep.
func TestRetryAfterEndsThePush(t *testing.T) {
	f := &fakeloki.Loki{Respond: status(429, "slow down", "Retry-After", "1")}
	c, _ := newClient(t, f, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	start := time.Now()
	res := pushAll(c, ctx, []Entry{{Time: t0, Line: "a"}})
	if len(res.Undelivered) != 1 || !res.Unavailable || res.RetryAfter != time.Second || res.Requests != 1 || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("%+v after %s", res, time.Since(start))
	}
}

func TestConnectionRefusedIsUndelivered(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c, err := New(Config{URL: url + "/loki/api/v1/push"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	res := pushAll(c, ctx, []Entry{{Time: t0, Line: "a"}})
	if len(res.Undelivered) != 1 || res.Err == nil || !strings.Contains(res.Err.Error(), "connection refused") || res.Requests < 2 {
		t.Fatalf("%+v", res)
	}
}

func TestAuthHeaders(t *testing.T) {
	tests := []struct {
		name     string
		mod      func(*Config, string) // second arg: server URL
		wantAuth string
		tenant   string
	}{
		{"basic", func(c *Config, _ string) { c.Username, c.Password = "123456", "glc_token" }, "Basic MTIzNDU2OmdsY190b2tlbg==", ""},
		{"basic from URL userinfo", func(c *Config, u string) {
			c.URL = strings.Replace(u, "http://", "http://123456:glc_token@", 1) + "/push"
		}, "Basic MTIzNDU2OmdsY190b2tlbg==", ""},
		{"bearer and tenant", func(c *Config, _ string) { c.BearerToken, c.TenantID = "tok", "team-a" }, "Bearer tok", "team-a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeloki.Loki{}
			srv := httptest.NewServer(f)
			defer srv.Close()
			cfg := Config{URL: srv.URL + "/push"}
			tt.mod(&cfg, srv.URL)
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res := pushAll(c, t.Context(), []Entry{{Time: t0, Line: "a"}}); res.Err != nil {
				t.Fatal(res.Err)
			}
			h := f.Pushes()[0].Header
			if h.Get("Authorization") != tt.wantAuth || h.Get("X-Scope-OrgID") != tt.tenant {
				t.Fatalf("headers %v", h)
			}
		})
	}
}

// Credentials must never reach a log line: check every error a push can give.
func TestErrorsNeverContainCredentials(t *testing.T) {
	secrets := []string{"s3cr3t-pass", "t0ken-value", "MTIzNDU2", "qu3ry-t0ken", "fr4gment"}
	responders := []func(int, http.ResponseWriter) bool{status(401, "unauthorized"), status(500, "boom"), status(400, "bad")}
	for i, respond := range responders {
		f := &fakeloki.Loki{Respond: respond}
		srv := httptest.NewServer(f)
		for _, cfg := range []Config{
			{URL: strings.Replace(srv.URL, "http://", "http://user:s3cr3t-pass@", 1) + "/push"},
			{URL: srv.URL + "/push", BearerToken: "t0ken-value"},
			{URL: srv.URL + "/push?api_key=qu3ry-t0ken#fr4gment"},
		} {
			c, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			res := pushAll(c, ctx, []Entry{{Time: t0, Line: "a"}})
			cancel()
			for _, s := range secrets {
				if res.Err == nil || strings.Contains(res.Err.Error(), s) {
					t.Fatalf("responder %d: error %v leaks or is missing", i, res.Err)
				}
			}
		}
		srv.Close()
	}
	// And a dead address, where the error comes from the transport.
	c, _ := New(Config{URL: "http://user:s3cr3t-pass@127.0.0.1:1/push"})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if res := pushAll(c, ctx, []Entry{{Time: t0, Line: "a"}}); res.Err == nil || strings.Contains(res.Err.Error(), "s3cr3t") {
		t.Fatalf("error %v", res.Err)
	}
}

func TestTLS(t *testing.T) {
	f := &fakeloki.Loki{}
	srv := httptest.NewTLSServer(f)
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	cert := srv.TLS.Certificates[0]
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	trusting, err := New(Config{URL: srv.URL + "/push", CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	if res := pushAll(trusting, t.Context(), []Entry{{Time: t0, Line: "a"}}); res.Delivered != 1 {
		t.Fatalf("with the CA: %+v", res)
	}
	untrusting, _ := New(Config{URL: srv.URL + "/push"})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	res := pushAll(untrusting, ctx, []Entry{{Time: t0, Line: "a"}})
	var certErr *tls.CertificateVerificationError
	if res.Delivered != 0 || !errors.As(res.Err, &certErr) {
		t.Fatalf("without the CA: %+v", res)
	}
}

func TestNewRejectsBadSettings(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.pem")
	_ = os.WriteFile(empty, []byte("not a cert"), 0o600)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"ftp URL", Config{URL: "ftp://x/push"}, "push URL"},
		{"no host", Config{URL: "http:///push"}, "push URL"},
		{"a password with a slash, not encoded", Config{URL: "https://123456:12/SECRET@host/loki/api/v1/push"}, "'@' after the host"},
		{"a port that is not a number", Config{URL: "http://host:abc/push"}, "push URL"},
		{"missing CA file", Config{URL: "https://x/push", CAFile: "/nonexistent.pem"}, "CA file"},
		{"CA file without a certificate", Config{URL: "https://x/push", CAFile: empty}, "CA file"},
		{"bad label name", Config{URL: "http://x/push", Labels: map[string]string{"a-b": "c"}}, "labels"},
		{"label value over Loki's limit", Config{URL: "http://x/push", Labels: map[string]string{"a": strings.Repeat("v", 2049)}}, "limit of 2048"},
		{"label name over Loki's limit", Config{URL: "http://x/push", Labels: map[string]string{strings.Repeat("n", 1025): "v"}}, "limit of 1024"},
		{"a tenant with a newline", Config{URL: "http://x/push", TenantID: "team\na"}, "tenant ID"},
		{"a token with a newline", Config{URL: "http://x/push", BearerToken: "tok\r\n"}, "bearer token"},
		{"reserved label name", Config{URL: "http://x/push", Labels: map[string]string{"__name__": "c"}}, "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

// What the dispatcher needs to tell an outage from a window that was just
// too short: whether Loki failed, and how long it asked to be left alone.
func TestPushSaysWhetherLokiIsUnavailable(t *testing.T) {
	tests := []struct {
		name            string
		respond         func(int, http.ResponseWriter) bool
		budget          time.Duration
		wantUnavailable bool
		wantRetryAfter  time.Duration
		maxRequests     int64
		// cancelAfter calls the push off this long after it starts, as
		// SHUTDOWN stops the background pushes; zero never does.
		cancelAfter time.Duration
	}{
		{"500 until the budget ends", status(500, "boom"), 300 * time.Millisecond, true, 0, 100, 0},
		{"407 from a forward proxy until the budget ends", status(407, "proxy authentication required", "Proxy-Authenticate", `Basic realm="proxy"`), 300 * time.Millisecond, true, 0, 100, 0},
		{"429 with Retry-After longer than the budget", status(429, "slow down", "Retry-After", "2"), 300 * time.Millisecond, true, 2 * time.Second, 1, 0},
		{"hanging: one request, then the window ends", func(int, http.ResponseWriter) bool { time.Sleep(time.Second); return true }, 2 * time.Second, true, 0, 1, 0},
		{"fine, but the budget ends between requests", nil, time.Second, false, 0, 1, 0},
		{"called off during a request", func(int, http.ResponseWriter) bool { time.Sleep(time.Second); return true }, 2 * time.Second, false, 0, 1, 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), tt.budget)
			defer cancel()
			if tt.cancelAfter > 0 {
				time.AfterFunc(tt.cancelAfter, cancel)
			}
			f := &fakeloki.Loki{Respond: tt.respond}
			srv := httptest.NewServer(f)
			defer srv.Close()
			var rt http.RoundTripper = http.DefaultTransport
			if tt.respond == nil {
				// The first request is stored; the window ends as it returns.
				rt = roundTripFunc(func(r *http.Request) (*http.Response, error) {
					defer cancel()
					return http.DefaultTransport.RoundTrip(r)
				})
			}
			c, err := New(Config{URL: srv.URL + "/push", RequestTimeout: 200 * time.Millisecond, MaxRequestBytes: 64 * 1024, Transport: rt})
			if err != nil {
				t.Fatal(err)
			}
			entries := make([]Entry, 2000) // several requests of 64 KiB
			for i := range entries {
				entries[i] = Entry{Time: t0.Add(time.Duration(i)), Line: strings.Repeat("x", 100)}
			}
			start := time.Now()
			res := pushAll(c, ctx, entries)
			if len(res.Undelivered) == 0 || res.Unavailable != tt.wantUnavailable || res.RetryAfter != tt.wantRetryAfter || int64(f.Requests()) > tt.maxRequests {
				t.Fatalf("undelivered %d, unavailable %v, retry after %s, %d requests in %s: %v",
					len(res.Undelivered), res.Unavailable, res.RetryAfter, int64(f.Requests()), time.Since(start), res.Err)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// One request never exceeds MaxRequestBytes, even when the bound is the
// smallest the configuration accepts: one maximal line with its labels and
// metadata (a split that always admits one entry sent 153 659 bytes with
// the bound at 65 536).
func TestRequestsStayWithinTheirBound(t *testing.T) {
	labels := map[string]string{"source": "lambda", "function": "fn", "team": strings.Repeat("t", 2000)}
	const maxLine = 100_000
	bound := MinRequestBytes(maxLine, labels)
	f := &fakeloki.Loki{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c, err := New(Config{URL: srv.URL + "/push", Labels: labels, LevelLabel: true, MaxLineBytes: maxLine, MaxRequestBytes: bound})
	if err != nil {
		t.Fatal(err)
	}
	var entries []Entry
	for i := range 12 {
		e := Entry{Time: t0.Add(time.Duration(i)), Line: strings.Repeat("é", 80_000), Stream: StreamType(i % 3), Level: "error",
			RequestID: strings.Repeat("r", MaxRequestIDBytes), TraceID: strings.Repeat("a", 32)}
		if i%4 == 0 {
			e.Line = "short"
		}
		entries = append(entries, e)
	}
	if res := pushAll(c, t.Context(), entries); res.Delivered != len(entries) {
		t.Fatalf("%+v", res)
	}
	for i, p := range f.Pushes() {
		if p.Size > bound {
			t.Errorf("request %d: %d bytes, bound %d", i, p.Size, bound)
		}
	}
	if n := len(f.Pushes()); n < 2 {
		t.Fatalf("%d requests: the bound was not exercised", n)
	}
}

// A 401 or 403 asks Reauth for new credentials once per request: with new
// ones the request is retried at once and nothing is lost; without, the
// entries are rejected as before.
func TestReauthOnAuthFailure(t *testing.T) {
	tests := []struct {
		name        string
		refuse      int // status for the old credentials
		reauth      func(url string) (Credentials, bool)
		wantAuth    string // the only Authorization the server accepts
		delivered   bool
		wantReauths int
		wantReqs    int
	}{
		{"rotated password", 401, func(u string) (Credentials, bool) { return Credentials{URL: u, Username: "u", Password: "new"}, true },
			"Basic dTpuZXc=", true, 1, 2},
		{"rotated token, 403", 403, func(u string) (Credentials, bool) { return Credentials{URL: u, BearerToken: "new-token"}, true },
			"Bearer new-token", true, 1, 2},
		{"rotated URL with userinfo", 401, func(u string) (Credentials, bool) {
			return Credentials{URL: strings.Replace(u, "http://", "http://u:new@", 1)}, true
		}, "Basic dTpuZXc=", true, 1, 2},
		{"nothing new", 401, func(string) (Credentials, bool) { return Credentials{}, false }, "Basic dTpuZXc=", false, 1, 1},
		{"new ones refused too", 401, func(u string) (Credentials, bool) { return Credentials{URL: u, Username: "u", Password: "newer"}, true },
			"Basic dTpuZXc=", false, 1, 2},
		{"new URL unusable", 401, func(string) (Credentials, bool) { return Credentials{URL: "ftp://x"}, true }, "Basic dTpuZXc=", false, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeloki.Loki{}
			handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != tt.wantAuth {
					http.Error(w, "unauthorized", tt.refuse)
					return
				}
				f.ServeHTTP(w, r)
			})
			reauths := 0
			var pushURL string
			c, srv := newClient(t, handler, func(cfg *Config) {
				cfg.Username, cfg.Password = "u", "old"
				cfg.Reauth = func(context.Context) (Credentials, bool) {
					reauths++
					return tt.reauth(pushURL)
				}
			})
			pushURL = srv.URL + "/api/prom/push"
			res := pushAll(c, t.Context(), []Entry{{Time: t0, Line: "a"}, {Time: t0.Add(time.Millisecond), Line: "b"}})
			if reauths != tt.wantReauths || res.Requests != tt.wantReqs {
				t.Fatalf("%d reauths and %d requests, want %d and %d", reauths, res.Requests, tt.wantReauths, tt.wantReqs)
			}
			if tt.delivered {
				if res.Delivered != 2 || res.Rejected != 0 || res.Err != nil || len(f.Lines()) != 1 {
					t.Fatalf("result %+v", res)
				}
				return
			}
			if res.Rejected != 2 || res.Delivered != 0 || !strings.Contains(fmt.Sprint(res.Err), "authentication failed") {
				t.Fatalf("result %+v", res)
			}
			for _, s := range []string{"old", "new", "dTpu"} {
				if strings.Contains(res.Err.Error(), ":"+s) || strings.Contains(res.Err.Error(), s+"@") {
					t.Fatalf("error %v holds credentials", res.Err)
				}
			}
		})
	}
}

// An outage's attempt is one request (until is now), and a background push
// starts no retry after its budget (until later), even with no deadline on
// its context: a push retrying at the client's own pace for as long as Loki
// is away would make the outage's backoff meaningless.
func TestPushRetryingStartsNoRetryAfterUntil(t *testing.T) {
	tests := []struct {
		name         string
		until        time.Duration // from the push's start
		min, max     int64         // requests
		wantTimedOut bool
	}{
		{"until now: one request", 0, 1, 1, false},
		{"until 400 ms: retries up to then", 400 * time.Millisecond, 3, 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeloki.Loki{Respond: status(503, "unavailable")}
			c, _ := newClient(t, f, nil)
			start := time.Now()
			res := c.PushRetrying(context.Background(), []Entry{{Time: t0, Line: "a"}}, start.Add(tt.until))
			took := time.Since(start)
			if n := int64(f.Requests()); n < tt.min || n > tt.max || len(res.Undelivered) != 1 || !res.Unavailable || took > tt.until+time.Second {
				t.Fatalf("%d requests in %s (want %d–%d): %+v", n, took, tt.min, tt.max, res)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name, value string
		want        time.Duration
	}{
		{"absent", "", 0},
		{"seconds", "2", 2 * time.Second},
		{"zero", "0", 0},
		{"negative", "-5", 0},
		{"HTTP date", "Sat, 28 Nov 2026 10:00:30 GMT", 30 * time.Second},
		{"HTTP date already past", "Sat, 28 Nov 2026 09:59:00 GMT", 0},
		{"garbage", "soon", 0},
		{"fraction", "1.5", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseRetryAfter(tt.value, now); got != tt.want {
				t.Errorf("parseRetryAfter(%q) = %s, want %s", tt.value, got, tt.want)
			}
		})
	}
}
