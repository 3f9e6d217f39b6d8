// Package faultproxy sits between the extension and a real Loki in tests and
// misbehaves on demand: down, failing with a status, failing every other
// request, hanging, or checking credentials like a gateway in front of Loki.
package faultproxy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is what the proxy does with a request.
type Kind int

const (
	// Pass forwards to Loki.
	Pass Kind = iota
	// Down closes the connection without answering.
	Down
	// Status answers every request with Fault.Code.
	Status
	// EveryOther answers with Fault.Code and forwards, alternately.
	EveryOther
	// Hang reads the request and never answers, until the fault changes.
	Hang
)

// Fault is the proxy's current behaviour.
type Fault struct {
	Kind Kind
	Code int
	// RetryAfter is the Retry-After header of a Status or EveryOther answer
	// (default "1" for 429, none otherwise).
	RetryAfter string
	// NoRetryAfter sends a 429 without Retry-After, as Loki's own rate
	// limiter does.
	NoRetryAfter bool
}

// Request is one request the proxy saw: when it came, and what became of
// it ("forwarded", "failed", "dropped", "hung", "unauthorized").
type Request struct {
	At      time.Time
	Outcome string
}

// Config configures a proxy.
type Config struct {
	// Upstream is Loki's base URL.
	Upstream string
	// TLS serves HTTPS with a certificate of a test CA (see CAFile).
	TLS bool
	// Host is a name of this machine's loopback address, other than
	// localhost, that URL uses and the TLS certificate names. A forward
	// proxy test needs one: Go never sends a request for localhost or a
	// loopback IP through a proxy, while a name is sent, and the proxy
	// resolves it to the loopback. The proxy listens on 127.0.0.1 always.
	Host string
	// Username and Password, when set, are required as basic auth; TenantID,
	// when set, is required as X-Scope-OrgID. The proxy strips Authorization.
	Username, Password, TenantID string
}

// Stats counts what the proxy did.
type Stats struct {
	Requests, Forwarded, Failed, Dropped, Hung, AuthFailures int64
	// MaxForwardedBytes is the largest request body forwarded.
	MaxForwardedBytes int64
	// RateLimited counts the forwarded requests Loki itself answered 429.
	RateLimited int64
}

// Proxy is a running fault proxy.
type Proxy struct {
	cfg    Config
	srv    *httptest.Server
	proxy  *httputil.ReverseProxy
	caFile string

	mu      sync.Mutex
	fault   Fault
	changed chan struct{}
	count   atomic.Int64
	log     []Request

	requests, forwarded, failed, dropped, hung, authFailures, maxBytes, rateLimited atomic.Int64
}

// Start runs a proxy in front of cfg.Upstream.
func Start(cfg Config) (*Proxy, error) {
	up, err := url.Parse(cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: upstream: %w", err)
	}
	p := &Proxy{cfg: cfg, proxy: httputil.NewSingleHostReverseProxy(up), changed: make(chan struct{})}
	p.proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.StatusCode == http.StatusTooManyRequests {
			p.rateLimited.Add(1)
		}
		return nil
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	if cfg.TLS {
		cert, caPEM, err := testCertificate(cfg.Host)
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "faultproxy-")
		if err != nil {
			return nil, err
		}
		p.caFile = filepath.Join(dir, "ca.pem")
		if err := os.WriteFile(p.caFile, caPEM, 0o600); err != nil {
			return nil, err
		}
		p.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		p.srv.StartTLS()
	} else {
		p.srv.Start()
	}
	return p, nil
}

// URL is the proxy's base URL.
func (p *Proxy) URL() string {
	if p.cfg.Host == "" {
		return p.srv.URL
	}
	u, _ := url.Parse(p.srv.URL)
	u.Host = net.JoinHostPort(p.cfg.Host, u.Port())
	return u.String()
}

// CAFile is the PEM file of the CA that signed the proxy's certificate.
func (p *Proxy) CAFile() string { return p.caFile }

// SetFault changes the behaviour; hung requests are released when it differs from the current one.
func (p *Proxy) SetFault(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f == p.fault {
		// Not a change: hung requests stay hung, as behind a Loki that
		// goes on hanging.
		return
	}
	p.fault = f
	close(p.changed)
	p.changed = make(chan struct{})
}

// SetCredentials changes the basic auth the proxy requires from now on, as
// a gateway does when its password is rotated.
func (p *Proxy) SetCredentials(username, password string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg.Username, p.cfg.Password = username, password
}

// Stats returns the counts so far.
func (p *Proxy) Stats() Stats {
	return Stats{Requests: p.requests.Load(), Forwarded: p.forwarded.Load(), Failed: p.failed.Load(), Dropped: p.dropped.Load(),
		Hung: p.hung.Load(), AuthFailures: p.authFailures.Load(), MaxForwardedBytes: p.maxBytes.Load(),
		RateLimited: p.rateLimited.Load()}
}

// Requests returns every request seen so far, in order of arrival.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.log...)
}

func (p *Proxy) record(at time.Time, outcome string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, Request{At: at, Outcome: outcome})
}

// Close stops the proxy, releasing hung requests.
func (p *Proxy) Close() {
	p.SetFault(Fault{Kind: Down})
	p.srv.CloseClientConnections()
	p.srv.Close()
	if p.caFile != "" {
		_ = os.RemoveAll(filepath.Dir(p.caFile))
	}
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	n := p.count.Add(1)
	at := time.Now()
	p.mu.Lock()
	fault, changed, username, password := p.fault, p.changed, p.cfg.Username, p.cfg.Password
	p.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	switch fault.Kind {
	case Down:
		p.record(at, "dropped")
		p.dropped.Add(1)
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		w.WriteHeader(http.StatusBadGateway)
		return
	case Status:
		p.record(at, "failed")
		p.fail(w, fault)
		return
	case EveryOther:
		if n%2 == 1 {
			p.record(at, "failed")
			p.fail(w, fault)
			return
		}
	case Hang:
		p.record(at, "hung")
		p.hung.Add(1)
		select {
		case <-changed:
		case <-r.Context().Done():
		}
		// A released hang is a failed request: returning from the handler
		// would answer 200 with no body, which a client takes as stored.
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
			}
		}
		return
	}
	if username != "" || password != "" {
		user, pass, ok := r.BasicAuth()
		if !ok || user != username || pass != password {
			p.record(at, "unauthorized")
			p.authFailures.Add(1)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	if p.cfg.TenantID != "" && r.Header.Get("X-Scope-OrgID") != p.cfg.TenantID {
		p.record(at, "unauthorized")
		p.authFailures.Add(1)
		http.Error(w, "no org id", http.StatusUnauthorized)
		return
	}
	r.Header.Del("Authorization")
	for {
		old := p.maxBytes.Load()
		if int64(len(body)) <= old || p.maxBytes.CompareAndSwap(old, int64(len(body))) {
			break
		}
	}
	p.record(at, "forwarded")
	p.forwarded.Add(1)
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	p.proxy.ServeHTTP(w, r)
}

func (p *Proxy) fail(w http.ResponseWriter, f Fault) {
	p.failed.Add(1)
	switch {
	case f.RetryAfter != "":
		w.Header().Set("Retry-After", f.RetryAfter)
	case f.Code == http.StatusTooManyRequests && !f.NoRetryAfter:
		w.Header().Set("Retry-After", "1")
	}
	http.Error(w, fmt.Sprintf("injected failure %d", f.Code), f.Code)
}

// testCertificate makes an in-memory CA and a server certificate for the
// loopback (and the name extra, if not empty), returning the server's key pair and the
// CA in PEM.
func testCertificate(extra string) (tls.Certificate, []byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "faultproxy test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if extra != "" {
		leaf.DNSNames = append(leaf.DNSNames, extra)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}
