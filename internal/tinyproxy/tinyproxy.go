// Package tinyproxy runs Debian's tinyproxy, a real HTTP forward proxy
// (plain requests and CONNECT), for tests of the extension behind
// HTTPS_PROXY and HTTP_PROXY.
package tinyproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/outputbuf"
)

// ErrNotInstalled says tinyproxy is not on PATH (apt-get install tinyproxy).
var ErrNotInstalled = errors.New("tinyproxy is not installed (apt-get install tinyproxy)")

// Proxy is a running tinyproxy on the loopback.
type Proxy struct {
	bin, conf string
	port      int
	cmd       *exec.Cmd
	log       outputbuf.Buffer // its log, from stderr, over every run
}

// Start runs tinyproxy on a free loopback port, in the foreground of its
// own process group, with its config in dir; it logs to its stderr, which
// Log returns.
// CONNECT is allowed to any port, as a proxy in front of a Loki on :3100
// would be configured.
func Start(dir string) (*Proxy, error) {
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		return nil, ErrNotInstalled
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("tinyproxy: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	p := &Proxy{bin: bin, port: port, conf: filepath.Join(dir, "tinyproxy.conf")}
	// No ConnectPort line: CONNECT to every port. Root drops to nobody.
	conf := fmt.Sprintf("Port %d\nListen 127.0.0.1\nTimeout 30\nLogLevel Connect\nMaxClients 20\nAllow 127.0.0.1\nDisableViaHeader Yes\n", port)
	if os.Geteuid() == 0 {
		conf += "User nobody\nGroup nogroup\n"
	}
	if err := os.WriteFile(p.conf, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("tinyproxy: %w", err)
	}
	return p, p.Restart()
}

// URL is the proxy's URL, as HTTPS_PROXY and HTTP_PROXY take it.
func (p *Proxy) URL() string { return "http://127.0.0.1:" + strconv.Itoa(p.port) }

// Restart starts the proxy again on its port after Stop (or for the first
// time), and waits until it accepts connections.
func (p *Proxy) Restart() error {
	cmd := exec.Command(p.bin, "-d", "-c", p.conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = &p.log, &p.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("tinyproxy: %w", err)
	}
	p.cmd = cmd
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(p.port), time.Second); err == nil {
			_ = c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.Stop()
	return fmt.Errorf("tinyproxy: not listening on %d after 10 s; log:\n%s", p.port, p.Log())
}

// Stop ends the proxy (connections through it are cut) and waits for it.
func (p *Proxy) Stop() {
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.cmd = nil
}

// Log is tinyproxy's log so far: one line per connection and request.
func (p *Proxy) Log() string { return p.log.String() }

// Requests returns the request lines the proxy logged ("CONNECT
// host:port HTTP/1.1", "POST http://host:port/path HTTP/1.1").
func (p *Proxy) Requests() []string {
	var out []string
	for _, l := range strings.Split(p.Log(), "\n") {
		if _, req, ok := strings.Cut(l, "Request (file descriptor "); ok {
			if _, line, ok := strings.Cut(req, "): "); ok {
				out = append(out, line)
			}
		}
	}
	return out
}
