package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/lambda-loki/grafana-loki-extension/filter"
	"github.com/lambda-loki/grafana-loki-extension/loglevel"
)

// processingRule is one element of LOKI_PROCESSING_RULES, in the shape of
// Datadog's processing rules
// (https://docs.datadoghq.com/agent/logs/advanced_log_collection/#filter-logs).
// The placeholder is a pointer so that a missing one is told from "".
type processingRule struct {
	Type               string  `json:"type"`
	Name               string  `json:"name"`
	Pattern            string  `json:"pattern"`
	ReplacePlaceholder *string `json:"replace_placeholder"`
}

// ruleShape is the shape every rule error message recalls.
const ruleShape = `{"type": "exclude_at_match" | "include_at_match" | "mask_sequences", "name": ..., "pattern": ...[, "replace_placeholder": ...]}`

// filter reads LOKI_MIN_LEVEL and LOKI_PROCESSING_RULES, and compiles the
// rules once to report every rule that is wrong, each by its position and
// name.
func (r *reader) filter() filter.Config {
	var cfg filter.Config
	if v := r.str("LOKI_MIN_LEVEL", ""); v != "" {
		cfg.MinLevel = loglevel.Parse(v)
		if cfg.MinLevel == loglevel.Unknown {
			r.fail("LOKI_MIN_LEVEL", "want one of trace, debug, info, warn, error, fatal; got %q", v)
		}
	}
	const name = "LOKI_PROCESSING_RULES"
	v := r.str(name, "")
	if v == "" {
		return cfg
	}
	var elements []json.RawMessage
	if err := json.Unmarshal([]byte(v), &elements); err != nil {
		r.fail(name, "not a JSON list of rules [%s, ...]: %s", ruleShape, strings.TrimPrefix(err.Error(), "json: "))
		return cfg
	}
	rules := make([]filter.Rule, 0, len(elements))
	shapeOK := true
	for i, el := range elements {
		rule, err := decodeRule(el)
		if err != nil {
			r.fail(name, "rule %d %q: %s", i+1, rule.Name, err)
			shapeOK = false
			continue
		}
		rules = append(rules, rule)
	}
	if !shapeOK {
		return cfg
	}
	if _, err := filter.New(filter.Config{MinLevel: cfg.MinLevel, Rules: rules}); err != nil {
		var joined interface{ Unwrap() []error }
		if !errors.As(err, &joined) {
			r.fail(name, "%s", err)
			return cfg
		}
		for _, e := range joined.Unwrap() {
			r.fail(name, "%s", e)
		}
		return cfg
	}
	cfg.Rules = rules
	return cfg
}

// decodeRule reads one rule strictly: a misspelt key is an error, not a
// setting silently ignored. The rule's name is returned even on error, when
// it can be read, for the message.
func decodeRule(el json.RawMessage) (filter.Rule, error) {
	var pr processingRule
	dec := json.NewDecoder(bytes.NewReader(el))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pr); err != nil {
		var named struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(el, &named)
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typeErr) && typeErr.Field != "":
			err = fmt.Errorf("%q must be a JSON %s", typeErr.Field, typeErr.Type)
		case errors.As(err, &typeErr):
			err = fmt.Errorf("want an object %s", ruleShape)
		default:
			err = fmt.Errorf("%s; want %s", strings.TrimPrefix(err.Error(), "json: "), ruleShape)
		}
		return filter.Rule{Name: named.Name}, err
	}
	rule := filter.Rule{Type: filter.Type(pr.Type), Name: pr.Name, Pattern: pr.Pattern}
	switch {
	case rule.Type == filter.MaskSequences && pr.ReplacePlaceholder == nil:
		return rule, errors.New(`mask_sequences needs "replace_placeholder", the text that replaces each match`)
	case rule.Type != filter.MaskSequences && pr.ReplacePlaceholder != nil:
		return rule, fmt.Errorf(`"replace_placeholder" is only for mask_sequences, and this rule is %q`, pr.Type)
	case pr.ReplacePlaceholder != nil:
		rule.Placeholder = *pr.ReplacePlaceholder
	}
	return rule, nil
}
