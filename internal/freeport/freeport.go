// Package freeport picks a TCP port for a process that will bind it later:
// the extension's telemetry listener, a local Loki.
//
// Asking the kernel for 127.0.0.1:0 and closing the probe is not enough: that
// port comes from the ephemeral range, which is also where every outgoing
// connection takes its source port, so between the probe and the child's bind
// a connection (to Loki, to the emulator, to a TLS stand-in) can take it and
// the bind fails with "address already in use". CI saw exactly that. Ports
// below the ephemeral range are never given to outgoing connections; only
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

// Pick returns a TCP port that no one listens on now, outside the kernel's
// ephemeral range where it can.
func Pick() (int, error) {
	low, high := lowest, ephemeralLow("/proc/sys/net/ipv4/ip_local_port_range")
	if high-low < 1000 {
		// The ephemeral range starts too low to leave room below it: fall
		// back to the kernel's choice and its small risk.
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

// ephemeralLow reads the first port of the kernel's ephemeral range, or
// Linux's default when the file is unreadable (another OS).
func ephemeralLow(file string) int {
	const linuxDefault = 32768
	b, err := os.ReadFile(file)
	if err != nil {
		return linuxDefault
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return linuxDefault
	}
	n, err := strconv.Atoi(fields[0])
	if err != nil || n <= 0 {
		return linuxDefault
	}
	return n
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
