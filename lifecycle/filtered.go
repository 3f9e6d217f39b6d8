package lifecycle

import (
	"github.com/lambda-loki/grafana-loki-extension/filter"
	"github.com/sirupsen/logrus"
)

// addFilterCounts adds to the shutdown summary what LOKI_MIN_LEVEL and
// each rule of LOKI_PROCESSING_RULES did over the sandbox's life, so that
// a user can see what a rule costs them: filtered lists the lines dropped
// by rule name (min_level for the level), masked the lines masked.
func addFilterCounts(fields logrus.Fields, f *filter.Filter) {
	var dropped, masked []filter.Count
	for _, c := range f.Counts() {
		if c.Type == filter.MaskSequences {
			masked = append(masked, c)
		} else {
			dropped = append(dropped, c)
		}
	}
	if len(dropped) > 0 {
		fields["filtered"] = filter.Format(dropped)
	}
	if len(masked) > 0 {
		fields["masked"] = filter.Format(masked)
	}
}
