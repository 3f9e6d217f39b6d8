package freeport

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestPickIsBindableAndOutsideTheEphemeralRange(t *testing.T) {
	first, last := ephemeralRange("/proc/sys/net/ipv4/ip_local_port_range")
	for range 20 {
		port, err := Pick()
		if err != nil {
			t.Fatal(err)
		}
		if port >= first && port <= last && first-lowest >= minRoom {
			t.Fatalf("port %d inside the ephemeral range %d-%d", port, first, last)
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

func TestEphemeralRange(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, content string
		first, last   int
	}{
		{"linux format", "40000\t60999\n", 40000, 60999},
		{"whole range", "1024 65535", 1024, 65535},
		{"empty", "", 32768, 60999},
		{"garbage", "x y", 32768, 60999},
		{"one number", "40000", 32768, 60999},
		{"reversed", "60999 40000", 32768, 60999},
		{"missing", "", 32768, 60999},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(dir, c.name)
			if c.name != "missing" {
				if err := os.WriteFile(file, []byte(c.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if first, last := ephemeralRange(file); first != c.first || last != c.last {
				t.Fatalf("got %d-%d, want %d-%d", first, last, c.first, c.last)
			}
		})
	}
}

func TestOutside(t *testing.T) {
	cases := []struct {
		name        string
		first, last int
		low, high   int
		ok          bool
	}{
		{"Linux default: below", 32768, 60999, lowest, 32768, true},
		{"starts low: above", 1024, 60999, 61000, 65536, true},
		{"too little room either side", 15500, 65000, 0, 0, false},
		{"every port", 1024, 65535, 0, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			low, high, ok := outside(c.first, c.last)
			if low != c.low || high != c.high || ok != c.ok {
				t.Fatalf("outside(%d, %d) = %d, %d, %v; want %d, %d, %v", c.first, c.last, low, high, ok, c.low, c.high, c.ok)
			}
		})
	}
}
