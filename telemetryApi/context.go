package telemetryApi

import (
	"strconv"
	"strings"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// Structured metadata names of a line's context and of a REPORT's figures
// (the README's structured metadata table).
const (
	MetaLogStream       = "log_stream"
	MetaFunctionVersion = "function_version"
	MetaFunctionAlias   = "function_alias"
	MetaColdStart       = "cold_start"
	MetaRestored        = "restored"
	MetaRuntime         = "runtime"
	MetaArchitecture    = "architecture"

	MetaDurationMs        = "duration_ms"
	MetaBilledDurationMs  = "billed_duration_ms"
	MetaMemorySizeMB      = "memory_size_mb"
	MetaMaxMemoryUsedMB   = "max_memory_used_mb"
	MetaInitDurationMs    = "init_duration_ms"
	MetaRestoreDurationMs = "restore_duration_ms"
	MetaStatus            = "status"
	MetaErrorType         = "error_type"
)

// ContextConfig says which context the listener puts on lines as
// structured metadata, never as labels: the same streams either way.
type ContextConfig struct {
	// Sandbox is on every line: the sandbox's log stream, the function
	// version, the runtime and the architecture, as far as they are known.
	Sandbox []loki.Pair
	// FunctionVersion is the version the sandbox runs; an INVOKE naming an
	// alias (Listener.Invoked) puts function_alias on its lines when Alias
	// is set.
	FunctionVersion string
	Alias           bool
	// ColdStart marks the lines of the first invocation cold_start="true":
	// set where the sandbox was initialised on demand for it.
	ColdStart bool
	// Restored marks the lines of the first invocation after a SnapStart
	// restore restored="true".
	Restored bool
	// Report puts a REPORT's figures on its line.
	Report bool
}

// contextState is the listener's side of the context: the metadata made
// from ContextConfig once, and what marks the next invocation. The caller
// serialises use (Listener.batchMu).
type contextState struct {
	cfg     ContextConfig
	sandbox *loki.Metadata
	// coldNext and restoredNext mark the next platform.start's invocation.
	coldNext, restoredNext bool
	// aliases are the qualifiers INVOKEs named, by request ID, until their
	// platform.start takes them; byAlias shares the metadata of each.
	aliases map[string]string
	byAlias map[string]*loki.Metadata
}

func newContextState(cfg ContextConfig) contextState {
	return contextState{cfg: cfg, sandbox: loki.NewMetadata(cfg.Sandbox...), coldNext: cfg.ColdStart}
}

// alias returns the qualifier of an INVOKE's function ARN when it names
// something other than the version running: an alias; "" otherwise.
func (c *contextState) alias(invokedFunctionArn string) string {
	if !c.cfg.Alias {
		return ""
	}
	if q := qualifier(invokedFunctionArn); q != c.cfg.FunctionVersion {
		return q
	}
	return ""
}

// invoked records an INVOKE's alias until its platform.start takes it.
func (c *contextState) invoked(requestID, alias string) {
	if c.aliases == nil || len(c.aliases) >= maxTracked {
		c.aliases = make(map[string]string)
	}
	c.aliases[requestID] = alias
}

// restore marks the next invocation as the first after a restore.
func (c *contextState) restore() {
	c.restoredNext = c.cfg.Restored
	c.coldNext = false
}

// start returns the metadata of the lines of the invocation a
// platform.start begins: the sandbox's, plus what marks this one.
func (c *contextState) start(requestID string) *loki.Metadata {
	m := c.sandbox
	if alias, ok := c.aliases[requestID]; ok {
		delete(c.aliases, requestID)
		if c.byAlias == nil || len(c.byAlias) >= maxTracked {
			c.byAlias = make(map[string]*loki.Metadata)
		}
		if c.byAlias[alias] == nil {
			c.byAlias[alias] = m.With(loki.Pair{Name: MetaFunctionAlias, Value: alias})
		}
		m = c.byAlias[alias]
	}
	if c.coldNext {
		m = m.With(loki.Pair{Name: MetaColdStart, Value: "true"})
	}
	if c.restoredNext {
		m = m.With(loki.Pair{Name: MetaRestored, Value: "true"})
	}
	c.coldNext, c.restoredNext = false, false
	return m
}

// report returns the metadata of a REPORT line: its invocation's and its
// figures.
func (c *contextState) report(inv *loki.Metadata, r *Report) *loki.Metadata {
	if !c.cfg.Report {
		return inv
	}
	millis := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	pairs := make([]loki.Pair, 0, 8)
	pairs = append(pairs, loki.Pair{Name: MetaDurationMs, Value: millis(r.Metrics.DurationMs)})
	for _, f := range []struct {
		name string
		v    *int64
	}{{MetaBilledDurationMs, r.Metrics.BilledDurationMs}, {MetaMemorySizeMB, r.Metrics.MemorySizeMB}, {MetaMaxMemoryUsedMB, r.Metrics.MaxMemoryUsedMB}} {
		if f.v != nil {
			pairs = append(pairs, loki.Pair{Name: f.name, Value: strconv.FormatInt(*f.v, 10)})
		}
	}
	if v := r.Metrics.InitDurationMs; v != nil {
		pairs = append(pairs, loki.Pair{Name: MetaInitDurationMs, Value: millis(*v)})
	}
	if v := r.Metrics.RestoreDurationMs; v != nil {
		pairs = append(pairs, loki.Pair{Name: MetaRestoreDurationMs, Value: millis(*v)})
	}
	pairs = append(pairs, loki.Pair{Name: MetaStatus, Value: r.Status}, loki.Pair{Name: MetaErrorType, Value: r.ErrorType})
	if inv == nil {
		inv = c.sandbox
	}
	return inv.With(pairs...)
}

// qualifier returns the version or alias an invoked function ARN ends
// with (arn:aws:lambda:region:account:function:name:qualifier), "" when it
// names none.
func qualifier(arn string) string {
	parts := strings.Split(arn, ":")
	if len(parts) != 8 || parts[0] != "arn" || parts[5] != "function" {
		return ""
	}
	return parts[7]
}
