package config

import (
	"cmp"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/envtest"
	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/outbox"
	"github.com/sirupsen/logrus"
)

// env is envtest.Lookup over alternating names and values.
func env(kv ...string) LookupFunc {
	pairs := make([]string, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		pairs = append(pairs, kv[i]+"="+kv[i+1])
	}
	return envtest.Lookup(pairs...)
}

func TestLoadDefaults(t *testing.T) {
	cfg, err := Load(env("LOKI_IP", "10.0.0.5", "AWS_LAMBDA_FUNCTION_NAME", "fn", "AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"article's push URL from LOKI_IP", cfg.Loki.URL == "http://10.0.0.5:3100/api/prom/push"},
		{"labels source and function", len(cfg.Loki.Labels) == 2 && cfg.Loki.Labels["source"] == "lambda" && cfg.Loki.Labels["function"] == "fn"},
		{"batch size 1", cfg.DispatchMinBatchSize == 1},
		{"flush at end", cfg.Flush.Mode == FlushEnd},
		{"listener 4323", cfg.ListenerPort == 4323},
		{"buffering 1000/262144/25", cfg.Buffering == Buffering{1000, 262144, 25}},
		{"info log", cfg.LogLevel == logrus.InfoLevel},
		{"not strict", !cfg.Strict},
		{"platform and extension lines off", !cfg.ShipPlatformLogs && !cfg.ShipExtensionLogs},
		{"queue bounds", cfg.QueueMaxEntries == DefaultQueueMaxEntries && cfg.QueueMaxBytes == DefaultQueueMaxBytes},
		{"timeouts", cfg.FlushTimeout == DefaultFlushTimeout && cfg.Loki.RequestTimeout == loki.DefaultRequestTimeout && cfg.SecretsTimeout == DefaultSecretsTimeout && cfg.WindowWait == outbox.DefaultWindowWait},
		{"structured metadata on", !cfg.Loki.NoStructuredMetadata},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("%s: %+v", c.name, cfg)
		}
	}
}

func TestLoadValues(t *testing.T) {
	cfg, err := Load(env(
		"LOKI_URL", "https://logs-prod-012.grafana.net/loki/api/v1/push", "LOKI_IP", "ignored",
		"LOKI_USERNAME", "123456", "LOKI_PASSWORD", "glc_secret", "LOKI_TENANT_ID", "team-a",
		"LOKI_LABELS", "env=prod, team=payments", "LOKI_LEVEL_LABEL", "true",
		"DISPATCH_MIN_BATCH_SIZE", "10", "FLUSH_STRATEGY", "periodic,250", "LOG_LEVEL", "debug",
		"TELEMETRY_MAX_ITEMS", "10000", "TELEMETRY_MAX_BYTES", "1048576", "TELEMETRY_TIMEOUT_MS", "100",
		"TELEMETRY_LISTENER_PORT", "4400", "STRICT_CONFIG", "true", "SHIP_PLATFORM_LOGS", "1",
		"AWS_LAMBDA_INITIALIZATION_TYPE", "lambda-managed-instances", "AWS_SAM_LOCAL", "true", "SECRETS_TIMEOUT_MS", "500",
		"LOKI_STRUCTURED_METADATA", "false",
	))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Loki.URL != "https://logs-prod-012.grafana.net/loki/api/v1/push" || cfg.Loki.Username != "123456" || cfg.Loki.TenantID != "team-a" ||
		cfg.Loki.Labels["env"] != "prod" || cfg.Loki.Labels["team"] != "payments" || !cfg.Loki.LevelLabel ||
		cfg.DispatchMinBatchSize != 10 || cfg.Flush != (FlushStrategy{FlushPeriodic, 250 * time.Millisecond}) || cfg.LogLevel != logrus.DebugLevel ||
		cfg.Buffering != (Buffering{10000, 1048576, 100}) || cfg.ListenerPort != 4400 || !cfg.Strict || !cfg.ShipPlatformLogs ||
		!cfg.ManagedInstances || !cfg.SAMLocal || !cfg.Loki.NoStructuredMetadata || cfg.SecretsTimeout != 500*time.Millisecond {
		t.Errorf("%+v", cfg)
	}
	if cfg, _ := Load(env("LOKI_IP", "10.0.0.5:8080", "FLUSH_STRATEGY", "Adaptive")); cfg.Loki.URL != "http://10.0.0.5:8080/api/prom/push" || cfg.Flush.Mode != FlushAdaptive {
		t.Errorf("LOKI_IP with port / adaptive: %+v", cfg)
	}
}

// Every bad value gives one clear error that names its variable, and Load
// still returns settings the lifecycle can run with.
func TestLoadErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		name     string
		env      []string
		variable string
		detail   string
	}{
		{"nowhere to ship", nil, "LOKI_URL", "neither LOKI_URL nor LOKI_IP"},
		{"bad scheme", []string{"LOKI_URL", "ftp://x/push"}, "LOKI_URL", "http:// or https://"},
		{"no host", []string{"LOKI_URL", "http:///push"}, "LOKI_URL", "no host"},
		{"IP that is a URL", []string{"LOKI_IP", "http://x"}, "LOKI_IP", "use LOKI_URL"},
		{"batch size not a number", []string{"LOKI_IP", "x", "DISPATCH_MIN_BATCH_SIZE", "ten"}, "DISPATCH_MIN_BATCH_SIZE", "whole number"},
		{"batch size zero", []string{"LOKI_IP", "x", "DISPATCH_MIN_BATCH_SIZE", "0"}, "DISPATCH_MIN_BATCH_SIZE", "between 1"},
		{"batch size the queue cannot hold", []string{"LOKI_IP", "x", "DISPATCH_MIN_BATCH_SIZE", "60000"}, "DISPATCH_MIN_BATCH_SIZE", "half of QUEUE_MAX_ENTRIES (50000)"},
		{"maxItems below Lambda's minimum (docs/lambda-runtime-contract.md#subscribe)", []string{"LOKI_IP", "x", "TELEMETRY_MAX_ITEMS", "10"}, "TELEMETRY_MAX_ITEMS", "between 1000 and 10000"},
		{"maxBytes above Lambda's maximum", []string{"LOKI_IP", "x", "TELEMETRY_MAX_BYTES", "2000000"}, "TELEMETRY_MAX_BYTES", "between 262144 and 1048576"},
		{"timeoutMs below 25", []string{"LOKI_IP", "x", "TELEMETRY_TIMEOUT_MS", "5"}, "TELEMETRY_TIMEOUT_MS", "between 25 and 30000"},
		{"reserved port", []string{"LOKI_IP", "x", "TELEMETRY_LISTENER_PORT", "9001"}, "TELEMETRY_LISTENER_PORT", "reserved"},
		{"unknown strategy", []string{"LOKI_IP", "x", "FLUSH_STRATEGY", "sometimes"}, "FLUSH_STRATEGY", "end, adaptive or periodic"},
		{"periodic without interval", []string{"LOKI_IP", "x", "FLUSH_STRATEGY", "periodic"}, "FLUSH_STRATEGY", "periodic,<ms>"},
		{"periodic with garbage", []string{"LOKI_IP", "x", "FLUSH_STRATEGY", "periodic,soon"}, "FLUSH_STRATEGY", "periodic,<ms>"},
		{"log level", []string{"LOKI_IP", "x", "LOG_LEVEL", "loud"}, "LOG_LEVEL", "debug"},
		{"boolean", []string{"LOKI_IP", "x", "STRICT_CONFIG", "yes please"}, "STRICT_CONFIG", "true or false"},
		{"structured metadata not a boolean", []string{"LOKI_IP", "x", "LOKI_STRUCTURED_METADATA", "on"}, "LOKI_STRUCTURED_METADATA", "true or false"},
		{"label name with a dash", []string{"LOKI_IP", "x", "LOKI_LABELS", "my-env=prod"}, "LOKI_LABELS", `"my-env" is invalid`},
		{"label name starting with a digit", []string{"LOKI_IP", "x", "LOKI_LABELS", "1env=prod"}, "LOKI_LABELS", `"1env" is invalid`},
		{"label without value", []string{"LOKI_IP", "x", "LOKI_LABELS", "env"}, "LOKI_LABELS", "not key=value"},
		{"label overriding function", []string{"LOKI_IP", "x", "LOKI_LABELS", "function=other"}, "LOKI_LABELS", "cannot be overridden"},
		{"label given twice", []string{"LOKI_IP", "x", "LOKI_LABELS", "env=a,env=b"}, "LOKI_LABELS", `"env" is given twice`},
		{"reserved label name", []string{"LOKI_IP", "x", "LOKI_LABELS", "__name__=x"}, "LOKI_LABELS", `"__name__" is invalid`},
		{"password without user", []string{"LOKI_IP", "x", "LOKI_PASSWORD", "p"}, "LOKI_USERNAME", "LOKI_PASSWORD"},
		{"window wait below 10 ms", []string{"LOKI_IP", "x", "LOKI_WINDOW_WAIT_MS", "5"}, "LOKI_WINDOW_WAIT_MS", "between 10 and 60000"},
		{"secrets timeout beyond the init's 10 s", []string{"LOKI_IP", "x", "SECRETS_TIMEOUT_MS", "10000"}, "SECRETS_TIMEOUT_MS", "between 100 and 9000"},
		{"token and basic auth", []string{"LOKI_IP", "x", "LOKI_USERNAME", "u", "LOKI_BEARER_TOKEN", "t"}, "LOKI_BEARER_TOKEN", "choose one"},
		{"IP with a query", []string{"LOKI_IP", "host?x"}, "LOKI_IP", "'?'"},
		{"IP with a fragment", []string{"LOKI_IP", "host#x"}, "LOKI_IP", "'#'"},
		{"IP with a port that is no number", []string{"LOKI_IP", "host:abc"}, "LOKI_IP", "port"},
		{"label name over Loki's limit", []string{"LOKI_IP", "x", "LOKI_LABELS", strings.Repeat("n", 1025) + "=v"}, "LOKI_LABELS", "at most 1024"},
		{"label value over Loki's limit", []string{"LOKI_IP", "x", "LOKI_LABELS", "env=" + strings.Repeat("v", 2049)}, "LOKI_LABELS", "limit of 2048"},
		{"user info in the URL and LOKI_USERNAME", []string{"LOKI_URL", "https://u:p@loki.example.com/push", "LOKI_USERNAME", "other"}, "LOKI_URL", "one place"},
		{"user info in the URL and a bearer token", []string{"LOKI_URL", "https://u:p@loki.example.com/push", "LOKI_BEARER_TOKEN", "t"}, "LOKI_URL", "one place"},
		{"tenant with a newline", []string{"LOKI_IP", "x", "LOKI_TENANT_ID", "team\na"}, "LOKI_TENANT_ID", "control character"},
		{"token with a newline", []string{"LOKI_IP", "x", "LOKI_BEARER_TOKEN", "tok\nen"}, "LOKI_BEARER_TOKEN", "control character"},
		{"request bound below one line", []string{"LOKI_IP", "x", "LOKI_MAX_REQUEST_BYTES", "65536"}, "LOKI_MAX_REQUEST_BYTES", "LOKI_MAX_LINE_BYTES=261120"},
		{"a password with an unescaped slash", []string{"LOKI_URL", "https://123456:12/SECRET@logs.example.com/loki/api/v1/push"}, "LOKI_URL", "percent-encode"},
		{"queue entries fewer than one batch's", []string{"LOKI_IP", "x", "QUEUE_MAX_ENTRIES", "100"}, "QUEUE_MAX_ENTRIES", "TELEMETRY_MAX_ITEMS (1000)"},
		{"queue entries fewer than a larger batch's", []string{"LOKI_IP", "x", "QUEUE_MAX_ENTRIES", "5000", "TELEMETRY_MAX_ITEMS", "10000"}, "QUEUE_MAX_ENTRIES", "TELEMETRY_MAX_ITEMS (10000)"},
		{"queue bytes less than one batch counts", []string{"LOKI_IP", "x", "QUEUE_MAX_BYTES", "1048576", "TELEMETRY_MAX_BYTES", "1048576"}, "QUEUE_MAX_BYTES", "TELEMETRY_MAX_BYTES=1048576"},
		{"spill in the root", []string{"LOKI_IP", "x", "QUEUE_SPILL_DIR", "/"}, "QUEUE_SPILL_DIR", "root"},
		{"spill in the function's code", []string{"LOKI_IP", "x", "QUEUE_SPILL_DIR", "/var/task/spill"}, "QUEUE_SPILL_DIR", "read-only"},
		{"spill in the layers", []string{"LOKI_IP", "x", "QUEUE_SPILL_DIR", "/opt/"}, "QUEUE_SPILL_DIR", "read-only"},
		{"CA file that is not there", []string{"LOKI_IP", "x", "LOKI_CA_FILE", "/nonexistent/ca.pem"}, "LOKI_CA_FILE", "reading"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(env(append(tt.env, "AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9999", "STRICT_CONFIG_UNUSED", "")...))
			if err == nil {
				t.Fatal("no error")
			}
			if msg := err.Error(); !strings.Contains(msg, tt.variable+":") || !strings.Contains(msg, tt.detail) {
				t.Fatalf("error %q does not name %s with %q", msg, tt.variable, tt.detail)
			}
			if cfg.RuntimeAPI != "127.0.0.1:9999" || cfg.ListenerPort == 0 {
				t.Fatalf("lifecycle settings lost: %+v", cfg)
			}
		})
	}
}

func TestLoadErrorNeverShowsThePassword(t *testing.T) {
	for _, kv := range [][]string{
		{"LOKI_URL", "http://user:s3cr3t@%zz/push"},
		{"LOKI_IP", "admin:s3cr3t@loki.example.com"},
		// No scheme: url reads the user name as the scheme, and the
		// password as what follows it.
		{"LOKI_URL", "s3cr3t:pw@loki.example.com/loki/api/v1/push"},
		{"LOKI_URL", "admin:s3cr3t@loki.example.com/loki/api/v1/push"},
		{"LOKI_URL", "s3cr3t://loki.example.com/loki/api/v1/push"},
		{"LOKI_URL", "https://123456:12/s3cr3t@logs.example.com/loki/api/v1/push"},
		{"LOKI_TENANT_ID", "s3cr3t\nx"},
		{"LOKI_BEARER_TOKEN", "s3cr3t\rx"},
	} {
		if kv[0] != "LOKI_URL" && kv[0] != "LOKI_IP" {
			kv = append(kv, "LOKI_IP", "x")
		}
		_, err := Load(env(kv...))
		if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), kv[0]) {
			t.Errorf("%s: error %v", kv[0], err)
		}
	}
}

// The README quotes the limit for the default queue: 48 MiB.
func TestMemoryLimit(t *testing.T) {
	for _, tt := range []struct {
		queue int
		want  int64
	}{
		{DefaultQueueMaxBytes, 48 << 20},
		{1 << 20, 25<<20 + 512<<10},
	} {
		if got := MemoryLimit(tt.queue); got != tt.want {
			t.Errorf("MemoryLimit(%d) = %d, want %d", tt.queue, got, tt.want)
		}
	}
}

// The spill makes its own subdirectory, so the directory it is given may
// be one the function uses, /tmp itself; by default it is $TMPDIR.
func TestSpillDirMayBeTmp(t *testing.T) {
	for _, dir := range []string{"", "/tmp", "/tmp/", "/mnt/efs/spill", "/opt-data"} {
		cfg, err := Load(env("LOKI_IP", "x", "QUEUE_SPILL_DIR", dir))
		if err != nil {
			t.Fatalf("%q: %v", dir, err)
		}
		if want := filepath.Clean(cmp.Or(dir, os.TempDir())); cfg.SpillDir != want {
			t.Errorf("%q: SpillDir %q, want %q", dir, cfg.SpillDir, want)
		}
	}
}

// The smallest accepted queue holds one batch of the default buffering,
// and of the largest with a large enough QUEUE_MAX_BYTES.
func TestQueueBoundsThatHoldABatch(t *testing.T) {
	for _, kv := range [][]string{
		{"QUEUE_MAX_ENTRIES", "1000", "QUEUE_MAX_BYTES", "1048576"},
		{"QUEUE_MAX_ENTRIES", "10000", "TELEMETRY_MAX_ITEMS", "10000", "TELEMETRY_MAX_BYTES", "1048576", "QUEUE_MAX_BYTES", "4194304"},
	} {
		if _, err := Load(env(append(kv, "LOKI_IP", "x")...)); err != nil {
			t.Errorf("%v: %v", kv, err)
		}
	}
}
