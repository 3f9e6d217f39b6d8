package lifecycle

import (
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/filter"
	"github.com/lambda-loki/grafana-loki-extension/loglevel"
	"github.com/sirupsen/logrus"
)

func TestAddFilterCounts(t *testing.T) {
	drop := filter.Rule{Type: filter.ExcludeAtMatch, Name: "drop_health", Pattern: "GET /health"}
	only := filter.Rule{Type: filter.IncludeAtMatch, Name: "app_only", Pattern: "app: "}
	mask := filter.Rule{Type: filter.MaskSequences, Name: "mask_emails", Pattern: `\S+@\S+`, Placeholder: "[EMAIL]"}
	tests := []struct {
		name                   string
		cfg                    filter.Config
		lines                  []string
		wantFiltered, wantMask string // "" when the field must be absent
	}{
		{"no filter: no fields", filter.Config{}, []string{"x"}, "", ""},
		{"drops by rule, the min level first, and masks apart", filter.Config{MinLevel: loglevel.Info, Rules: []filter.Rule{drop, only, mask}},
			[]string{"[DEBUG] app: x", "app: GET /health", "chatter", "app: to a@b.c", "app: to d@e.f", "app: fine"},
			"min_level=1 drop_health=1 app_only=1", "mask_emails=2"},
		{"only a mask", filter.Config{Rules: []filter.Rule{mask}}, []string{"a@b.c"}, "", "mask_emails=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := filter.New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range tt.lines {
				f.Apply(l, loglevel.Unknown)
			}
			fields := logrus.Fields{}
			addFilterCounts(fields, f)
			got, hasFiltered := fields["filtered"]
			if hasFiltered != (tt.wantFiltered != "") || hasFiltered && got != tt.wantFiltered {
				t.Errorf("filtered = %v, want %q", got, tt.wantFiltered)
			}
			got, hasMasked := fields["masked"]
			if hasMasked != (tt.wantMask != "") || hasMasked && got != tt.wantMask {
				t.Errorf("masked = %v, want %q", got, tt.wantMask)
			}
		})
	}
}
