package telemetryApi

import (
	"github.com/lambda-loki/grafana-loki-extension/loglevel"
	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// keep runs the configured filter over a function or extension line,
// masking it in place; false means the line is not shipped. Lines the
// extension writes itself (a timed-out or crashed invocation, a SHUTDOWN
// reason) never come here, so no rule can hide them.
func (l *Listener) keep(e *loki.Entry) bool {
	if l.cfg.Filter == nil {
		return true
	}
	line, keep := l.cfg.Filter.Apply(e.Line, loglevel.Parse(e.Level))
	e.Line = line
	return keep
}
