package freeport

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestPickIsBindableAndBelowTheEphemeralRange(t *testing.T) {
	high := ephemeralLow("/proc/sys/net/ipv4/ip_local_port_range")
	for range 20 {
		port, err := Pick()
		if err != nil {
			t.Fatal(err)
		}
		if high-lowest >= 1000 && (port < lowest || port >= high) {
			t.Fatalf("port %d outside %d-%d", port, lowest, high-1)
		}
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			t.Fatalf("picked port %d cannot be bound: %v", port, err)
		}
		ln.Close()
	}
}

func TestFreeSeesAListenerOnTheLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if free(ln.Addr().(*net.TCPAddr).Port) {
		t.Fatal("a port with a loopback listener was reported free")
	}
}

func TestEphemeralLow(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, content string
		want          int
	}{
		{"linux format", "40000\t60999\n", 40000},
		{"empty", "", 32768},
		{"garbage", "x y", 32768},
		{"missing", "", 32768},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(dir, c.name)
			if c.name != "missing" {
				if err := os.WriteFile(file, []byte(c.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := ephemeralLow(file); got != c.want {
				t.Fatalf("got %d, want %d", got, c.want)
			}
		})
	}
}
