package lifecycle_test

import (
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/filter"
	"github.com/lambda-loki/grafana-loki-extension/loglevel"
)

// BenchmarkPipelineFiltered is BenchmarkPipeline with LOKI_MIN_LEVEL or
// LOKI_PROCESSING_RULES set, and without either for comparison in the same
// run: what a filter adds to the per-line cost. The lines are INFO and hold
// no secret, as nearly all lines do, so every line is still shipped.
func BenchmarkPipelineFiltered(b *testing.B) {
	threeMasks := []filter.Rule{
		{Type: filter.MaskSequences, Name: "mask_emails", Pattern: `[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`, Placeholder: "[EMAIL]"},
		{Type: filter.MaskSequences, Name: "mask_bearer", Pattern: `(Bearer )[A-Za-z0-9._~+/-]+=*`, Placeholder: "${1}[TOKEN]"},
		{Type: filter.MaskSequences, Name: "mask_cards", Pattern: `\b(?:\d[ -]?){13,16}\b`, Placeholder: "[CARD]"},
	}
	tests := []struct {
		name string
		cfg  filter.Config
	}{
		{"no rules", filter.Config{}},
		{"min level", filter.Config{MinLevel: loglevel.Info}},
		{"three masks", filter.Config{Rules: threeMasks}},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			f, err := filter.New(tt.cfg)
			if err != nil {
				b.Fatal(err)
			}
			benchmarkPipeline(b, f, benchContext)
		})
	}
}
