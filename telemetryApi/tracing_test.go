package telemetryApi

import "testing"

func TestTraceIDFromXRay(t *testing.T) {
	tests := []struct {
		name   string
		header string
		want   string
		ok     bool
	}{
		{"Lambda's header", "Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1", "5f35ae120c0fec141ab77a00bc047aa2", true},
		{"X-Ray's documented example", "Root=1-5759e988-bd862e3fe1be46a994272793", "5759e988bd862e3fe1be46a994272793", true},
		{"Root not first, spaces, lineage", "Parent=53995c3f42cd8ad8; Root=1-5759e988-bd862e3fe1be46a994272793 ;Sampled=0;Lineage=a87bd80c:1", "5759e988bd862e3fe1be46a994272793", true},
		{"upper-case digits are lowered", "Root=1-5759E988-BD862E3FE1BE46A994272793", "5759e988bd862e3fe1be46a994272793", true},
		{"the first Root counts", "Root=1-5759e988-bd862e3fe1be46a994272793;Root=1-5f35ae12-0c0fec141ab77a00bc047aa2", "5759e988bd862e3fe1be46a994272793", true},
		{"empty", "", "", false},
		{"no Root", "Parent=2be948a625588e32;Sampled=1", "", false},
		{"root in lower case is another key", "root=1-5759e988-bd862e3fe1be46a994272793", "", false},
		{"Root without value", "Root=;Sampled=1", "", false},
		{"Root without =", "Root;Sampled=1", "", false},
		{"version 2", "Root=2-5759e988-bd862e3fe1be46a994272793", "", false},
		{"no version", "Root=5759e988-bd862e3fe1be46a994272793", "", false},
		{"already 32 hex digits", "Root=5759e988bd862e3fe1be46a994272793", "", false},
		{"short epoch", "Root=1-5759e98-bd862e3fe1be46a9942727930", "", false},
		{"short random part", "Root=1-5759e988-bd862e3fe1be46a99427279", "", false},
		{"long random part", "Root=1-5759e988-bd862e3fe1be46a9942727931", "", false},
		{"dash in the wrong place", "Root=1-5759e988bd-862e3fe1be46a994272793", "", false},
		{"underscore for a dash", "Root=1-5759e988_bd862e3fe1be46a994272793", "", false},
		{"non-hex digit", "Root=1-5759e988-bd862e3fe1be46a99427279g", "", false},
		{"non-hex in the epoch", "Root=1-5759x988-bd862e3fe1be46a994272793", "", false},
		{"multi-byte character", "Root=1-5759e988-bd862e3fe1be46a9942727é", "", false},
		{"all zeros", "Root=1-00000000-000000000000000000000000", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := TraceIDFromXRay(tt.header)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("TraceIDFromXRay(%q) = %q, %t; want %q, %t", tt.header, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestTraceIDFromXRayAllocatesOnlyTheResult(t *testing.T) {
	const header = "Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1"
	if n := testing.AllocsPerRun(100, func() { _, _ = TraceIDFromXRay(header) }); n > 1 {
		t.Fatalf("%v allocations, want 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = TraceIDFromXRay("Root=1-5f35ae12-nothex") }); n != 0 {
		t.Fatalf("%v allocations on malformed input, want 0", n)
	}
}
