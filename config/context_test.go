package config

import (
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

func TestContext(t *testing.T) {
	lambda := []string{"LOKI_IP", "10.0.0.5", "AWS_LAMBDA_FUNCTION_VERSION", "7",
		"AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/02/[7]abc", "AWS_EXECUTION_ENV", "AWS_Lambda_python3.12"}
	arch := lambdaArchitecture(runtime.GOARCH)
	all := []loki.Pair{{Name: "log_stream", Value: "2026/01/02/[7]abc"}, {Name: "function_version", Value: "7"},
		{Name: "runtime", Value: "python3.12"}, {Name: "architecture", Value: arch}}
	tests := []struct {
		name                          string
		env                           []string
		sandbox                       []loki.Pair
		alias, cold, restored, report bool
	}{
		{"everything on by default", lambda, all, true, true, true, true},
		{"provisioned concurrency has no cold start", append(lambda, "AWS_LAMBDA_INITIALIZATION_TYPE", "provisioned-concurrency"), all, true, false, true, true},
		{"nor SnapStart", append(lambda, "AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start"), all, true, false, true, true},
		{"a custom runtime and no log stream", []string{"LOKI_IP", "10.0.0.5", "AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"},
			[]loki.Pair{{Name: "function_version", Value: "$LATEST"}, {Name: "architecture", Value: arch}}, true, true, true, true},
		{"each off", append(lambda, "LOKI_METADATA_EXCLUDE", " log_stream, FUNCTION_VERSION,cold_start,restored,runtime,architecture,report,"), nil, false, false, false, false},
		{"some off", append(lambda, "LOKI_METADATA_EXCLUDE", "runtime,report"), []loki.Pair{all[0], all[1], all[3]}, true, true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(env(tt.env...))
			if err != nil {
				t.Fatal(err)
			}
			c := cfg.Context
			if !slices.Equal(c.Sandbox, tt.sandbox) || c.Alias != tt.alias || c.ColdStart != tt.cold || c.Restored != tt.restored || c.Report != tt.report {
				t.Fatalf("%+v", c)
			}
			if want := tt.env[3]; c.FunctionVersion != want {
				t.Fatalf("function version %q, want %q", c.FunctionVersion, want)
			}
		})
	}
}

func TestContextExcludeNamesTheVariable(t *testing.T) {
	_, err := Load(env("LOKI_IP", "10.0.0.5", "LOKI_METADATA_EXCLUDE", "runtime,cold-start"))
	if err == nil || !strings.Contains(err.Error(), "LOKI_METADATA_EXCLUDE") || !strings.Contains(err.Error(), `"cold-start"`) {
		t.Fatalf("error %v", err)
	}
}
