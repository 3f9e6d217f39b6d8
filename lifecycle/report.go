package lifecycle

import (
	"errors"
	"sync"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/outbox"
	"github.com/sirupsen/logrus"
)

// totals add up the pushes over the extension's life; the background
// pushes and the lifecycle both report.
type totals struct {
	mu     sync.Mutex
	counts loki.Counts
	drops  outbox.Drops
}

func (t *totals) add(rep outbox.Report) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.counts.Add(rep.Counts)
	t.drops.Add(rep.Drops)
}

func (t *totals) fields() logrus.Fields {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := logrus.Fields{
		"delivered": t.counts.Delivered, "rejected": t.counts.Rejected, "unconfirmed": t.counts.Unconfirmed,
		"dropped": t.drops.Dropped, "spilled": t.drops.Spilled, "truncated": t.counts.Truncated,
	}
	for why := range outbox.NumDropReasons {
		f[why.Name()] = t.drops.ByReason[why]
	}
	return f
}

// report logs one push: quietly when all went well, once per window with
// the reason when lines were rejected, requeued or dropped, and once each
// way when Loki goes away and comes back.
func (x *extension) report(window string, rep outbox.Report) {
	x.totals.add(rep)
	log := x.log.WithFields(logrus.Fields{
		"window": window, "delivered": rep.Delivered, "queued": rep.Remaining,
		"requests": rep.Requests, "retries": rep.Retries, "took": rep.Took.Round(time.Microsecond).String(),
	})
	// One push can end an outage and begin the next (Loki answered, then
	// failed again): the dispatcher stops at a failure, so the end came
	// first.
	if rep.OutageEnded {
		log.Infof("Loki is back after %s; what waited is delivered, and pushes before /next resume", rep.OutageLasted.Round(time.Millisecond))
	}
	switch {
	case rep.OutageBegan:
		log.WithError(rep.Err).Warnf("Loki is unavailable; %d lines wait, pushed in the background until it answers: invocations are not held for it meanwhile", rep.Remaining)
	case rep.Requeued > 0 && rep.Outage:
		log.WithError(rep.Err).Debug("Loki is still unavailable")
	case rep.Requeued > 0:
		log.WithError(rep.Err).Warnf("%d lines could not be delivered in this window; they stay queued for the next one", rep.Requeued)
	}
	if rep.MetadataRefused != nil {
		log.WithError(rep.MetadataRefused).Warn("Loki refuses structured metadata (Loki 2, or allow_structured_metadata: false): lines go without request_id, trace_id and level from now on; set LOKI_STRUCTURED_METADATA=false to stop trying")
	}
	if rep.Spilled > 0 {
		log.Debugf("moved %d lines to the spill file: the queue reached QUEUE_MAX_ENTRIES=%d or QUEUE_MAX_BYTES=%d while Loki could not take them",
			rep.Spilled, x.cfg.QueueMaxEntries, x.cfg.QueueMaxBytes)
	}
	if rep.Dropped > 0 {
		x.logDrops(log, rep.Drops)
	}
	if rep.Rejected > 0 {
		log := log.WithError(rep.RejectErr)
		if errors.Is(rep.RejectErr, loki.ErrUnauthorized) {
			log = log.WithField("hint", "check LOKI_USERNAME, LOKI_PASSWORD, LOKI_BEARER_TOKEN and LOKI_TENANT_ID")
		}
		log.Errorf("Loki rejected %d lines; they are not retried", rep.Rejected)
	}
	if rep.Unconfirmed > 0 {
		log.WithError(rep.RejectErr).Warnf("Loki refused some of %d lines without saying how many; it stores the valid ones, the others are not retried", rep.Unconfirmed)
	}
	if rep.Truncated > 0 {
		log.Infof("truncated %d lines longer than LOKI_MAX_LINE_BYTES=%d", rep.Truncated, x.cfg.Loki.MaxLineBytes)
	}
	// Not at SHUTDOWN, where a line per push would, with SHIP_EXTENSION_LOGS,
	// come back as a line to push and keep the drain from ever going quiet.
	if rep.Requests > 0 && window != "shutdown" {
		log.Debug("flushed")
	}
}

// logDrops logs what one push's window dropped: one line per reason, each
// with its own count, and the spill's error where there was one.
func (x *extension) logDrops(log *logrus.Entry, d outbox.Drops) {
	for why := range outbox.NumDropReasons {
		n := d.ByReason[why]
		if n == 0 {
			continue
		}
		log := log.WithField("reason", why.Name())
		if d.SpillErr != nil && why != outbox.DropNoSpill {
			log = log.WithError(d.SpillErr)
		}
		if why == outbox.DropUnreadable {
			log.Warnf("dropped %d spilled lines: %s", n, why.Explain())
			continue
		}
		log.Warnf("dropped the %d oldest lines: the queue reached QUEUE_MAX_ENTRIES=%d or QUEUE_MAX_BYTES=%d while Loki could not take them, and %s",
			n, x.cfg.QueueMaxEntries, x.cfg.QueueMaxBytes, why.Explain())
	}
}
