// Package freeport picks a TCP port for a process that will bind it later:
// the extension's telemetry listener, a local Loki.
//
// Asking the kernel for 127.0.0.1:0 and closing the probe is not enough: that
// port comes from the ephemeral range, which is also where every outgoing
// connection takes its source port, so between the probe and the child's bind
// a connection (to Loki, to the emulator, to a TLS stand-in) can take it and
// the bind fails with "address already in use". CI saw exactly that. Ports
// outside the ephemeral range are never given to outgoing connections; only
// another listener can take one, and a random choice checked by a probe on
// every interface makes that unlikely enough.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the smallest port Pick offers: below it sit well-known and
// registered services a machine is likely to run.
const lowest = 15000

// attempts bounds the probes before Pick gives up.
const attempts = 200

// minRoom is the fewest ports a range outside the ephemeral one must hold to
// be used: fewer would make two picks at once likely to meet.
const minRoom = 1000

// Pick returns a TCP port that no one listens on now, outside the kernel's
// ephemeral range where it can: below it, or above it when it starts too low
// to leave room; the kernel's own choice when it covers nearly every port.
func Pick() (int, error) {
	low, high, ok := outside(ephemeralRange("/proc/sys/net/ipv4/ip_local_port_range"))
	if !ok {
		return kernelPick()
	}
	for range attempts {
		port := low + rand.IntN(high-low)
		if free(port) {
			return port, nil
		}
	}
	return 0, fmt.Errorf("freeport: no free port in %d-%d after %d tries", low, high-1, attempts)
}

// outside returns the ports [low, high) Pick chooses from, given the
// ephemeral range first-last; ok is false when neither side has room.
func outside(first, last int) (low, high int, ok bool) {
	switch {
	case first-lowest >= minRoom:
		return lowest, first, true
	case 65536-(last+1) >= minRoom:
		return last + 1, 65536, true
	}
	return 0, 0, false
}

// free reports whether port can be bound on every interface, which is how
// the extension binds its listener locally.
func free(port int) bool {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// ephemeralRange reads the kernel's ephemeral port range, or Linux's
// default when the file is unreadable (another OS) or malformed.
func ephemeralRange(file string) (first, last int) {
	const linuxFirst, linuxLast = 32768, 60999
	b, err := os.ReadFile(file)
	if err != nil {
		return linuxFirst, linuxLast
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return linuxFirst, linuxLast
	}
	first, err1 := strconv.Atoi(fields[0])
	last, err2 := strconv.Atoi(fields[1])
	if err1 != nil || err2 != nil || first <= 0 || last < first || last > 65535 {
		return linuxFirst, linuxLast
	}
	return first, last
}

func kernelPick() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	defer ln.Close()
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("freeport: listener has no TCP address")
	}
	return addr.Port, nil
}
