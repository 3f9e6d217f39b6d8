package tinyproxy

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
)

// A plain request goes through the proxy and is logged; once stopped, the
// proxy refuses connections; restarted, it forwards again.
func TestForwardsAndStops(t *testing.T) {
	p, err := Start(t.TempDir())
	if errors.Is(err, ErrNotInstalled) {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "hello") }))
	defer srv.Close()
	proxyURL, _ := url.Parse(p.URL())
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	get := func() (string, error) {
		resp, err := c.Get(srv.URL + "/path")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}
	if body, err := get(); err != nil || body != "hello" {
		t.Fatalf("through the proxy: %q, %v; log:\n%s", body, err, p.Log())
	}
	if reqs := p.Requests(); len(reqs) != 1 || !strings.HasPrefix(reqs[0], "GET "+srv.URL+"/path") {
		t.Fatalf("logged requests %q; log:\n%s", reqs, p.Log())
	}
	p.Stop()
	c.CloseIdleConnections()
	if _, err := get(); err == nil {
		t.Fatal("a stopped proxy forwarded")
	}
	if err := p.Restart(); err != nil {
		t.Fatal(err)
	}
	if body, err := get(); err != nil || body != "hello" {
		t.Fatalf("after the restart: %q, %v", body, err)
	}
}
