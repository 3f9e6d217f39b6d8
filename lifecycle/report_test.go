package lifecycle

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/outbox"
	"github.com/sirupsen/logrus"
)

// The outage is logged once each way, in the order it happened, also when
// one flush saw Loki come back and go away again.
func TestReportLogsTheOutageEachWay(t *testing.T) {
	const (
		back = "Loki is back"
		away = "Loki is unavailable"
	)
	tests := []struct {
		name string
		rep  outbox.Report
		want []string
	}{
		{"began", outbox.Report{OutageBegan: true, Outage: true, Requeued: 5}, []string{away}},
		{"ended", outbox.Report{OutageEnded: true, OutageLasted: time.Second}, []string{back}},
		{"ended, then began again", outbox.Report{OutageEnded: true, OutageBegan: true, Outage: true, Requeued: 5}, []string{back, away}},
		{"still away: nothing at info", outbox.Report{Outage: true, Requeued: 5}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, buf := testLog(t)
			log.SetLevel(logrus.InfoLevel)
			x := &extension{log: log}
			x.report("background", tt.rep)
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
				for _, m := range []string{back, away} {
					if strings.Contains(line, m) {
						got = append(got, m)
					}
				}
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("logged %q, want %q:\n%s", got, tt.want, buf.String())
			}
		})
	}
}

// A drop is logged with its own reason, one line per reason, never
// blaming a missing spill file for lines a full one, or a full disk,
// could not take.
func TestReportLogsEachDropWithItsReason(t *testing.T) {
	enospc := fmt.Errorf("spill: writing a segment: %w", syscall.ENOSPC)
	tests := []struct {
		name    string
		drops   outbox.Drops
		want    []string
		notWant string
	}{
		{"no spill", dropsOf(outbox.DropNoSpill, 5, nil), []string{"dropped the 5 oldest lines", "there is no spill file"}, "refused"},
		{"spill full", dropsOf(outbox.DropSpillFull, 7, nil), []string{"dropped the 7 oldest lines", "the spill file is full"}, "no spill file"},
		{"disk full", dropsOf(outbox.DropSpillError, 9, enospc), []string{"dropped the 9 oldest lines", "the disk refused", "no space left on device"}, "no spill file"},
		{"unreadable", dropsOf(outbox.DropUnreadable, 3, nil), []string{"dropped 3 spilled lines", "could not be read back"}, "no spill file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, buf := testLog(t)
			x := &extension{log: log}
			x.report("background", outbox.Report{Drops: tt.drops})
			out := buf.String()
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("the log lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, tt.notWant) {
				t.Errorf("the log says %q:\n%s", tt.notWant, out)
			}
		})
	}
}

func dropsOf(why outbox.DropReason, n int, err error) outbox.Drops {
	d := outbox.Drops{Dropped: n, SpillErr: err}
	d.ByReason[why] = n
	return d
}
