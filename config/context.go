package config

import (
	"runtime"
	"slices"
	"strings"

	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/telemetryApi"
)

// Context fields LOKI_METADATA_EXCLUDE can name, in the README's order.
// function_version covers function_alias; report covers a REPORT's
// figures.
var contextFields = []string{
	telemetryApi.MetaLogStream, telemetryApi.MetaFunctionVersion, telemetryApi.MetaColdStart,
	telemetryApi.MetaRestored, telemetryApi.MetaRuntime, telemetryApi.MetaArchitecture, "report",
}

// context reads what lines carry about their sandbox and invocation:
// Lambda's variables, the extension's own architecture, and
// LOKI_METADATA_EXCLUDE, the fields not to send.
func (r *reader) context() telemetryApi.ContextConfig {
	off := r.excluded("LOKI_METADATA_EXCLUDE")
	version := r.str("AWS_LAMBDA_FUNCTION_VERSION", "")
	initType := r.str("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
	c := telemetryApi.ContextConfig{
		FunctionVersion: version,
		Alias:           !off[telemetryApi.MetaFunctionVersion],
		// Provisioned concurrency initialises ahead of any invocation, and
		// SnapStart restores instead: neither's first invocation waits for
		// an init.
		ColdStart: !off[telemetryApi.MetaColdStart] && initType == "on-demand",
		Restored:  !off[telemetryApi.MetaRestored],
		Report:    !off["report"],
	}
	for _, p := range []loki.Pair{
		{Name: telemetryApi.MetaLogStream, Value: r.str("AWS_LAMBDA_LOG_STREAM_NAME", "")},
		{Name: telemetryApi.MetaFunctionVersion, Value: version},
		// AWS_Lambda_python3.12 is the runtime python3.12; a custom runtime
		// (provided.al2023) sets none.
		{Name: telemetryApi.MetaRuntime, Value: strings.TrimPrefix(r.str("AWS_EXECUTION_ENV", ""), "AWS_Lambda_")},
		{Name: telemetryApi.MetaArchitecture, Value: lambdaArchitecture(runtime.GOARCH)},
	} {
		if !off[p.Name] && p.Value != "" {
			c.Sandbox = append(c.Sandbox, p)
		}
	}
	return c
}

// lambdaArchitecture names a Go architecture as Lambda's Architectures
// setting does; the extension is built for the one it runs on.
func lambdaArchitecture(goarch string) string {
	switch goarch {
	case "amd64":
		return "x86_64"
	default:
		return goarch
	}
}

// excluded parses a comma-separated list of context field names.
func (r *reader) excluded(name string) map[string]bool {
	off := map[string]bool{}
	var bad []string
	for _, f := range strings.Split(r.str(name, ""), ",") {
		f = strings.ToLower(strings.TrimSpace(f))
		switch {
		case f == "":
		case slices.Contains(contextFields, f):
			off[f] = true
		default:
			bad = append(bad, f)
		}
	}
	if len(bad) > 0 {
		r.fail(name, "unknown field %q; want a comma-separated list of %s", strings.Join(bad, ","), strings.Join(contextFields, ", "))
	}
	return off
}
