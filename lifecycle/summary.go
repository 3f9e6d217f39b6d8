package lifecycle

import (
	"time"

	"github.com/lambda-loki/grafana-loki-extension/filter"
	"github.com/lambda-loki/grafana-loki-extension/outbox/spill"
	"github.com/sirupsen/logrus"
)

// summarize logs the shutdown summary: what the extension's life did with
// every line, and the lines left undelivered at the deadline, which are
// lost. Its counts add up:
//
//	written + recovered + added = delivered + filteredLines + dropped
//	                              + rejected + unconfirmed + lost
//
// written is what the listener received (before the filter), recovered
// what an earlier process's spill held, added the lines the extension
// wrote itself (the SHUTDOWN reason); dropped is the sum of the
// dropped<Reason> counts. lambdaDropped (records Lambda never delivered)
// and recoveredLost (lines an earlier process's spill lost) are before
// written and recovered.
func (x *extension) summarize(reason string, start time.Time, left int) {
	fields := x.totals.fields()
	fields["reason"] = reason
	fields["took"] = time.Since(start).Round(time.Millisecond).String()
	stats := x.listener.Stats()
	fields["lambdaDropped"] = stats.LambdaDropped
	filtered := filteredLines(x.filter)
	fields["written"] = stats.Lines + filtered
	fields["filteredLines"] = filtered
	fields["recovered"] = x.leftovers.Entries
	fields["recoveredLost"] = x.leftovers.Lost
	fields["added"] = x.added
	fields["lost"] = left
	addFilterCounts(fields, x.filter)
	if left > 0 {
		x.log.WithFields(fields).Errorf("shutting down with %d lines undelivered: Loki could not take them before the shutdown deadline", left)
		return
	}
	x.log.WithFields(fields).Info("shut down")
}

// filteredLines is how many lines LOKI_MIN_LEVEL and the exclude and
// include rules dropped (masked lines are shipped).
func filteredLines(f *filter.Filter) int64 {
	var n int64
	for _, c := range f.Counts() {
		if c.Type != filter.MaskSequences {
			n += c.Lines
		}
	}
	return n
}

// logLeftovers says what an earlier process left in the spill: lines
// pushed first, and what could not be read back, with the reason.
func logLeftovers(log *logrus.Logger, lo spill.Leftovers) {
	if lo.Entries > 0 {
		log.WithField("recovered", lo.Entries).Infof("found %d lines an earlier process of this sandbox spilled and could not push before it was stopped: they are pushed first", lo.Entries)
	}
	if lo.Lost > 0 || lo.LostBytes > 0 {
		log.WithError(lo.Err).WithField("recoveredLost", lo.Lost).
			Warnf("could not read back %d bytes an earlier process of this sandbox spilled (at least %d lines): they are lost", lo.LostBytes, lo.Lost)
	}
}
