package faultproxy

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

func TestFaults(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			t.Error("Authorization reached the upstream")
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer upstream.Close()
	tests := []struct {
		name  string
		cfg   Config
		fault Fault
		auth  [2]string
		want  []int // status per request; 0 = connection error
	}{
		{"pass", Config{}, Fault{}, [2]string{}, []int{204, 204}},
		{"down", Config{}, Fault{Kind: Down}, [2]string{}, []int{0}},
		{"status 429", Config{}, Fault{Kind: Status, Code: 429}, [2]string{}, []int{429, 429}},
		{"every other 503", Config{}, Fault{Kind: EveryOther, Code: 503}, [2]string{}, []int{503, 204, 503, 204}},
		{"basic auth ok", Config{Username: "u", Password: "p"}, Fault{}, [2]string{"u", "p"}, []int{204}},
		{"basic auth wrong", Config{Username: "u", Password: "p"}, Fault{}, [2]string{"u", "x"}, []int{401}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Upstream = upstream.URL
			p, err := Start(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			p.SetFault(tt.fault)
			for i, want := range tt.want {
				req, _ := http.NewRequest(http.MethodPost, p.URL()+"/loki/api/v1/push", strings.NewReader("x"))
				if tt.auth[0] != "" {
					req.SetBasicAuth(tt.auth[0], tt.auth[1])
				}
				resp, err := http.DefaultClient.Do(req)
				got := 0
				if err == nil {
					got = resp.StatusCode
					resp.Body.Close()
				}
				if got != want {
					t.Fatalf("request %d: got %d (%v), want %d", i, got, err, want)
				}
			}
		})
	}
}

// A rotated password: the old one is refused from then on, the new one
// passes.
func TestSetCredentials(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer upstream.Close()
	p, err := Start(Config{Upstream: upstream.URL, Username: "u", Password: "old"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	status := func(password string) int {
		req, _ := http.NewRequest(http.MethodPost, p.URL()+"/loki/api/v1/push", strings.NewReader("x"))
		req.SetBasicAuth("u", password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := status("old"); got != http.StatusNoContent {
		t.Fatalf("old password before the rotation: %d", got)
	}
	p.SetCredentials("u", "new")
	if got := []int{status("old"), status("new")}; got[0] != http.StatusUnauthorized || got[1] != http.StatusNoContent {
		t.Fatalf("after the rotation: old %d, new %d", got[0], got[1])
	}
	if n := p.Stats().AuthFailures; n != 1 {
		t.Fatalf("%d auth failures, want 1", n)
	}
}

func TestHangIsReleasedBySetFault(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	defer upstream.Close()
	p, err := Start(Config{Upstream: upstream.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetFault(Fault{Kind: Hang})
	done := make(chan error, 1)
	go func() {
		resp, err := http.Post(p.URL(), "text/plain", strings.NewReader("x"))
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-done:
		t.Fatal("a hung request was answered")
	case <-time.After(200 * time.Millisecond):
	}
	p.SetFault(Fault{})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("SetFault did not release the hung request")
	}
}

func TestTLSWithTheTestCA(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	defer upstream.Close()
	p, err := Start(Config{Upstream: upstream.URL, TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pem, err := os.ReadFile(p.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := trusting.Post(p.URL(), "text/plain", strings.NewReader("x"))
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("with the CA: %v", err)
	}
	resp.Body.Close()
	if _, err := http.Post(p.URL(), "text/plain", strings.NewReader("x")); err == nil {
		t.Fatal("a client without the CA connected")
	}
}
