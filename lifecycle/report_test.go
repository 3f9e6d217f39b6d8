package lifecycle

import (
	"strings"
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
