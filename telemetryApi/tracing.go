package telemetryApi

import "strings"

// TraceIDFromXRay returns the trace ID of an X-Ray trace header value, such
// as the one Lambda puts in platform.start's tracing.value when the function
// has active tracing:
//
//	Root=1-5f35ae12-0c0fec141ab77a00bc047aa2;Parent=2be948a625588e32;Sampled=1
//
// in the form OpenTelemetry, W3C Trace Context and Tempo use: the 32 lower-case
// hex digits of Root without its version ("1-") and its dash,
// 5f35ae120c0fec141ab77a00bc047aa2. The X-Ray ID is the same 128 bits (8 hex
// digits of epoch seconds, then 24 random ones), which is why the AWS Distro
// for OpenTelemetry and X-Ray agree on traces; see
// https://docs.aws.amazon.com/xray/latest/devguide/xray-api-sendingdata.html#xray-api-traceids.
//
// It reports false when there is no Root field, or its version is not 1, or
// a part has the wrong length or a digit that is not hex, or the ID is all
// zeros (which W3C Trace Context calls invalid). Upper-case digits are
// accepted and lowered. It allocates only the result.
func TraceIDFromXRay(header string) (string, bool) {
	root, ok := xrayField(header, "Root")
	// 1-<8 hex digits>-<24 hex digits>
	if !ok || len(root) != 35 || root[0] != '1' || root[1] != '-' || root[10] != '-' {
		return "", false
	}
	var id [32]byte
	n, zero := 0, true
	for i := 2; i < len(root); i++ {
		if i == 10 {
			continue
		}
		c := root[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		default:
			return "", false
		}
		zero = zero && c == '0'
		id[n] = c
		n++
	}
	if zero {
		return "", false
	}
	return string(id[:]), true
}

// xrayField returns the value of the first key=value field of an X-Ray
// header (fields separated by ';'); keys are case-sensitive, as X-Ray
// writes them.
func xrayField(header, key string) (string, bool) {
	for header != "" {
		var field string
		field, header, _ = strings.Cut(header, ";")
		if k, v, ok := strings.Cut(strings.TrimSpace(field), "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}
