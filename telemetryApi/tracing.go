package telemetryApi

import "strings"

// TraceIDFromXRay returns the trace ID of an X-Ray trace header
// ("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=…;Sampled=1") in the
// form OpenTelemetry and Tempo use: the 32 hex digits of the root's time
// and random parts, without the version and the dash. ok is false when the
// header has no well-formed root.
func TraceIDFromXRay(header string) (id string, ok bool) {
	for field := range strings.SplitSeq(header, ";") {
		root, found := strings.CutPrefix(strings.TrimSpace(field), "Root=")
		if !found {
			continue
		}
		if len(root) != 2+8+1+24 || root[:2] != "1-" || root[10] != '-' {
			return "", false
		}
		var b [32]byte
		n := 0
		for i := 2; i < len(root); i++ {
			c := root[i]
			switch {
			case i == 10:
				continue
			case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
			case c >= 'A' && c <= 'F':
				c += 'a' - 'A'
			default:
				return "", false
			}
			b[n] = c
			n++
		}
		return string(b[:]), true
	}
	return "", false
}
