// Package config reads the extension's settings from the environment.
//
// It is the one place where environment variables are parsed, defaulted and
// validated; everything else receives typed values. A bad value produces an
// error that names the variable, and Load still returns the settings the
// lifecycle needs, so the extension can keep the function working while it
// ships nothing.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/filter"
	"github.com/lambda-loki/grafana-loki-extension/loki"
	"github.com/lambda-loki/grafana-loki-extension/outbox"
	"github.com/lambda-loki/grafana-loki-extension/telemetryApi"
	"github.com/sirupsen/logrus"
)

// LookupFunc reads one environment variable; os.LookupEnv is the real one.
type LookupFunc func(name string) (string, bool)

// FlushMode says when queued lines are pushed to Loki.
type FlushMode int

const (
	// FlushEnd pushes at the end of every invocation, before /next.
	FlushEnd FlushMode = iota
	// FlushAdaptive behaves like FlushEnd until invocations arrive faster
	// than a threshold, then pushes in the background during the next
	// invocation so that no billed time is added.
	FlushAdaptive
	// FlushPeriodic pushes on a timer in the background.
	FlushPeriodic
)

// FlushStrategy is the parsed FLUSH_STRATEGY.
type FlushStrategy struct {
	Mode FlushMode
	// Interval is the timer period for FlushPeriodic, and the background
	// period for FlushAdaptive (and Managed Instances).
	Interval time.Duration
}

// Buffering is the Telemetry API subscription's buffering, within the
// limits Lambda accepts.
type Buffering struct {
	MaxItems  int
	MaxBytes  int
	TimeoutMs int
}

// Config is every setting of the extension.
type Config struct {
	// FunctionName is AWS_LAMBDA_FUNCTION_NAME, the value of the function label.
	FunctionName string
	// RuntimeAPI is AWS_LAMBDA_RUNTIME_API, host:port of the Extensions API.
	RuntimeAPI string
	// ManagedInstances is true on Lambda Managed Instances, where there is
	// no INVOKE event and no runtimeDone, and telemetry needs schema 2025-01-29.
	ManagedInstances bool
	// SAMLocal is AWS_SAM_LOCAL=true: the listener binds all interfaces.
	SAMLocal bool

	// Loki is the push client's configuration (URL, labels, auth, limits).
	Loki loki.Config
	// DispatchMinBatchSize is how many lines must be queued before a flush
	// at the end of an invocation pushes them; SHUTDOWN pushes everything.
	DispatchMinBatchSize int
	// Flush is when to push.
	Flush FlushStrategy
	// FlushTimeout bounds the time one invocation's flush may add.
	FlushTimeout time.Duration
	// WindowWait is the least a window waits for Loki to answer a request
	// before the request goes on in the background (LOKI_WINDOW_WAIT_MS).
	WindowWait time.Duration

	// ListenerPort is where the telemetry listener binds.
	ListenerPort int
	// Buffering is the Telemetry API subscription's buffering.
	Buffering Buffering
	// QueueMaxEntries and QueueMaxBytes bound the lines held in memory;
	// past them the oldest lines go to the spill file, or are dropped and
	// counted when it is off or full.
	QueueMaxEntries int
	QueueMaxBytes   int
	// SpillDir is the directory the spill makes its own subdirectory in;
	// SpillMaxBytes bounds it (0: no spill).
	SpillDir      string
	SpillMaxBytes int64
	// OutageRetryMax is the longest wait between background attempts while
	// Loki is away.
	OutageRetryMax time.Duration

	// ShipPlatformLogs adds START/END/REPORT lines on a type="platform" stream.
	ShipPlatformLogs bool
	// ShipExtensionLogs adds extensions' own log lines on a type="extension" stream.
	ShipExtensionLogs bool
	// Filter is LOKI_MIN_LEVEL and LOKI_PROCESSING_RULES: what is dropped or
	// masked before a function or extension line is queued.
	Filter filter.Config
	// Context is what lines carry about their sandbox and invocation as
	// structured metadata (LOKI_METADATA_EXCLUDE turns fields off).
	Context telemetryApi.ContextConfig

	// LogLevel is the level of the extension's own log.
	LogLevel logrus.Level
	// Strict reports a configuration error to Lambda with /extension/init/error
	// instead of running degraded.
	Strict bool
	// SecretsTimeout bounds fetching the settings kept in Secrets Manager
	// or Parameter Store (SECRETS_TIMEOUT_MS).
	SecretsTimeout time.Duration
}

// Defaults, documented in the README's configuration table.
const (
	DefaultLokiPort             = 3100
	DefaultLokiPushPath         = "/api/prom/push"
	DefaultListenerPort         = 4323
	DefaultMinBatchSize         = 1
	DefaultFlushTimeout         = 2000 * time.Millisecond
	DefaultQueueMaxEntries      = 100_000
	DefaultQueueMaxBytes        = 16 * 1024 * 1024
	DefaultSpillMaxBytes        = 128 * 1024 * 1024
	DefaultOutageRetryMax       = 30 * time.Second
	DefaultTelemetryMaxItems    = 1000
	DefaultTelemetryMaxBytes    = 262_144
	DefaultTelemetryTimeoutMs   = 25
	DefaultAdaptiveInterval     = 1000 * time.Millisecond
	DefaultManagedFlushInterval = 1000 * time.Millisecond
	DefaultSecretsTimeout       = 2000 * time.Millisecond
)

// Limits Lambda puts on the subscription's buffering
// (docs/lambda-runtime-contract.md#subscribe).
const (
	minTelemetryMaxItems  = 1000
	maxTelemetryMaxItems  = 10_000
	minTelemetryMaxBytes  = 262_144
	maxTelemetryMaxBytes  = 1_048_576
	minTelemetryTimeoutMs = 25
	maxTelemetryTimeoutMs = 30_000
)

// MemoryLimit is the Go memory limit the extension sets when GOMEMLIMIT is
// not: the extension shares the function's memory, and without a limit the
// garbage collector lets the heap grow to twice what is live, so a full
// queue would cost several times QUEUE_MAX_BYTES. Half the queue again
// leaves room for the batch taken out of it, and 24 MiB for the rest.
func MemoryLimit(queueMaxBytes int) int64 { return int64(queueMaxBytes)*3/2 + 24<<20 }

// Load reads the configuration. On error the returned Config still holds
// every setting that could be read (at least the lifecycle ones), and the
// error names each variable that is wrong and why.
func Load(lookup LookupFunc) (Config, error) {
	r := reader{lookup: lookup}
	cfg := Config{
		FunctionName:     r.str("AWS_LAMBDA_FUNCTION_NAME", "unknown"),
		RuntimeAPI:       r.str("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
		ManagedInstances: r.str("AWS_LAMBDA_INITIALIZATION_TYPE", "") == "lambda-managed-instances",
		SAMLocal:         strings.EqualFold(r.str("AWS_SAM_LOCAL", ""), "true"),
		Strict:           r.boolean("STRICT_CONFIG", false),
		LogLevel:         r.logLevel("LOG_LEVEL", logrus.InfoLevel),
	}
	cfg.ListenerPort = r.intIn("TELEMETRY_LISTENER_PORT", DefaultListenerPort, 1, 65535)
	if cfg.ListenerPort == 9001 {
		r.fail("TELEMETRY_LISTENER_PORT", "port 9001 is reserved by Lambda")
		cfg.ListenerPort = DefaultListenerPort
	}
	cfg.Buffering = Buffering{
		MaxItems:  r.intIn("TELEMETRY_MAX_ITEMS", DefaultTelemetryMaxItems, minTelemetryMaxItems, maxTelemetryMaxItems),
		MaxBytes:  r.intIn("TELEMETRY_MAX_BYTES", DefaultTelemetryMaxBytes, minTelemetryMaxBytes, maxTelemetryMaxBytes),
		TimeoutMs: r.intIn("TELEMETRY_TIMEOUT_MS", DefaultTelemetryTimeoutMs, minTelemetryTimeoutMs, maxTelemetryTimeoutMs),
	}
	cfg.DispatchMinBatchSize = r.intIn("DISPATCH_MIN_BATCH_SIZE", DefaultMinBatchSize, 1, 1_000_000)
	cfg.Flush = r.flushStrategy("FLUSH_STRATEGY")
	cfg.FlushTimeout = r.millis("FLUSH_TIMEOUT_MS", DefaultFlushTimeout, 10, 60_000)
	cfg.WindowWait = r.millis("LOKI_WINDOW_WAIT_MS", outbox.DefaultWindowWait, 10, 60_000)
	cfg.QueueMaxEntries = r.intIn("QUEUE_MAX_ENTRIES", DefaultQueueMaxEntries, 100, 10_000_000)
	cfg.QueueMaxBytes = r.intIn("QUEUE_MAX_BYTES", DefaultQueueMaxBytes, 1024*1024, 1024*1024*1024)
	cfg.SpillMaxBytes = int64(r.intIn("QUEUE_SPILL_MAX_BYTES", DefaultSpillMaxBytes, 0, 64*1024*1024*1024))
	if cfg.SpillMaxBytes > 0 && cfg.SpillMaxBytes < 4*1024*1024 {
		r.fail("QUEUE_SPILL_MAX_BYTES", "must be 0 (no spill file) or at least 4194304 (4 MiB), got %d", cfg.SpillMaxBytes)
		cfg.SpillMaxBytes = DefaultSpillMaxBytes
	}
	cfg.SpillDir = r.spillDir()
	r.queueHoldsABatch(&cfg)
	cfg.OutageRetryMax = r.millis("OUTAGE_RETRY_MAX_MS", DefaultOutageRetryMax, 1000, 600_000)
	if cfg.DispatchMinBatchSize > cfg.QueueMaxEntries/2 {
		// The queue would drop its oldest lines before the batch is ever full.
		r.fail("DISPATCH_MIN_BATCH_SIZE", "must be at most half of QUEUE_MAX_ENTRIES (%d), got %d", cfg.QueueMaxEntries/2, cfg.DispatchMinBatchSize)
	}
	// At most 9 s: Lambda allows 10 s for the whole init.
	cfg.SecretsTimeout = r.millis("SECRETS_TIMEOUT_MS", DefaultSecretsTimeout, 100, 9000)
	cfg.ShipPlatformLogs = r.boolean("SHIP_PLATFORM_LOGS", false)
	cfg.ShipExtensionLogs = r.boolean("SHIP_EXTENSION_LOGS", false)
	cfg.Filter = r.filter()
	cfg.Context = r.context()

	labels := map[string]string{"source": "lambda", "function": cfg.FunctionName}
	r.labels("LOKI_LABELS", labels)
	cfg.Loki = loki.Config{
		URL:             r.lokiURL(),
		Labels:          labels,
		LevelLabel:      r.boolean("LOKI_LEVEL_LABEL", false),
		Username:        r.str("LOKI_USERNAME", ""),
		Password:        r.str("LOKI_PASSWORD", ""),
		BearerToken:     r.str("LOKI_BEARER_TOKEN", ""),
		TenantID:        r.str("LOKI_TENANT_ID", ""),
		CAFile:          r.str("LOKI_CA_FILE", ""),
		RequestTimeout:  r.millis("LOKI_TIMEOUT_MS", loki.DefaultRequestTimeout, 10, 60_000),
		MaxLineBytes:    r.intIn("LOKI_MAX_LINE_BYTES", loki.DefaultMaxLineBytes, 1024, 16*1024*1024),
		MaxRequestBytes: r.intIn("LOKI_MAX_REQUEST_BYTES", loki.DefaultMaxRequestBytes, 64*1024, 64*1024*1024),
		// Sent unless turned off; a Loki that refuses it is detected anyway.
		NoStructuredMetadata: !r.boolean("LOKI_STRUCTURED_METADATA", true),
	}
	r.lokiAuth(&cfg.Loki)
	if need := loki.MinRequestBytes(cfg.Loki.MaxLineBytes, cfg.Loki.Labels); cfg.Loki.MaxRequestBytes < need {
		r.fail("LOKI_MAX_REQUEST_BYTES", "must be at least %d to hold one line of LOKI_MAX_LINE_BYTES=%d with its labels and metadata (one request never exceeds LOKI_MAX_REQUEST_BYTES); raise it or lower LOKI_MAX_LINE_BYTES", need, cfg.Loki.MaxLineBytes)
	}
	if cfg.Loki.CAFile != "" {
		if _, err := loki.LoadCAs(cfg.Loki.CAFile); err != nil {
			r.fail("LOKI_CA_FILE", "%v", err)
		}
	}
	return cfg, r.err()
}

// lokiAuth checks the credentials: one kind of auth, each value one that an
// HTTP header can carry. No message repeats a value.
func (r *reader) lokiAuth(c *loki.Config) {
	if c.Password != "" && c.Username == "" {
		r.fail("LOKI_USERNAME", "must be set when LOKI_PASSWORD is set")
	}
	if c.BearerToken != "" && (c.Username != "" || c.Password != "") {
		r.fail("LOKI_BEARER_TOKEN", "cannot be combined with LOKI_USERNAME/LOKI_PASSWORD; choose one kind of auth")
	}
	if u, err := url.Parse(c.URL); err == nil && u.User != nil && (c.Username != "" || c.BearerToken != "") {
		// The URL's password would be silently dropped for the other one.
		r.fail("LOKI_URL", "holds a user name or password, and LOKI_USERNAME or LOKI_BEARER_TOKEN is set too; give the credentials in one place")
	}
	for name, v := range map[string]string{"LOKI_TENANT_ID": c.TenantID, "LOKI_BEARER_TOKEN": c.BearerToken} {
		if err := loki.ValidateHeaderValue(v); err != nil {
			r.fail(name, "%v", err)
		}
	}
}

// reader collects one error per bad variable so that Load reports them all at once.
type reader struct {
	lookup LookupFunc
	errs   []error
}

func (r *reader) fail(name, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

func (r *reader) err() error {
	if len(r.errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid configuration: %w", errors.Join(r.errs...))
}

// str returns the trimmed value, or def when the variable is unset or blank.
func (r *reader) str(name, def string) string {
	v, ok := r.lookup(name)
	if v = strings.TrimSpace(v); !ok || v == "" {
		return def
	}
	return v
}

func (r *reader) boolean(name string, def bool) bool {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, "want true or false, got %q", v)
		return def
	}
	return b
}

func (r *reader) intIn(name string, def, lo, hi int) int {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.fail(name, "want a whole number, got %q", v)
		return def
	}
	if n < lo || n > hi {
		r.fail(name, "must be between %d and %d, got %d", lo, hi, n)
		return def
	}
	return n
}

func (r *reader) millis(name string, def time.Duration, lo, hi int) time.Duration {
	return time.Duration(r.intIn(name, int(def/time.Millisecond), lo, hi)) * time.Millisecond
}

func (r *reader) logLevel(name string, def logrus.Level) logrus.Level {
	v := r.str(name, "")
	if v == "" {
		return def
	}
	lvl, err := logrus.ParseLevel(v)
	if err != nil {
		r.fail(name, "want one of panic, fatal, error, warn, info, debug, trace, got %q", v)
		return def
	}
	return lvl
}

// flushStrategy parses end | adaptive | periodic,<ms>.
func (r *reader) flushStrategy(name string) FlushStrategy {
	v := strings.ToLower(r.str(name, "end"))
	mode, arg, hasArg := strings.Cut(v, ",")
	switch strings.TrimSpace(mode) {
	case "end":
		if !hasArg {
			return FlushStrategy{Mode: FlushEnd}
		}
	case "adaptive":
		if !hasArg {
			return FlushStrategy{Mode: FlushAdaptive, Interval: DefaultAdaptiveInterval}
		}
	case "periodic":
		ms, err := strconv.Atoi(strings.TrimSpace(arg))
		if hasArg && err == nil && ms >= 10 && ms <= 600_000 {
			return FlushStrategy{Mode: FlushPeriodic, Interval: time.Duration(ms) * time.Millisecond}
		}
		r.fail(name, "periodic needs an interval in milliseconds between 10 and 600000, as periodic,<ms>; got %q", v)
		return FlushStrategy{Mode: FlushEnd}
	}
	r.fail(name, "want end, adaptive or periodic,<ms>; got %q", v)
	return FlushStrategy{Mode: FlushEnd}
}

// lokiURL returns the push URL from LOKI_URL, or from LOKI_IP as the article
// configured it (http://$LOKI_IP:3100/api/prom/push). No message repeats the
// value: it may hold a password or a token.
func (r *reader) lokiURL() string {
	if raw := r.str("LOKI_URL", ""); raw != "" {
		if _, err := loki.ParsePushURL(raw); err != nil {
			r.fail("LOKI_URL", "%v", err)
			return ""
		}
		return raw
	}
	ip := r.str("LOKI_IP", "")
	if ip == "" {
		r.fail("LOKI_URL", "neither LOKI_URL nor LOKI_IP is set, so there is nowhere to ship logs; set LOKI_URL to Loki's push URL (for example https://loki.example.com/loki/api/v1/push) or LOKI_IP to its address")
		return ""
	}
	if strings.ContainsAny(ip, "/@?# ") {
		r.fail("LOKI_IP", "want a host name or IP address (optionally :port), but it holds a '/', '@', '?', '#' or space; use LOKI_URL for a full URL")
		return ""
	}
	host := ip
	if _, _, err := net.SplitHostPort(ip); err != nil {
		host = net.JoinHostPort(strings.Trim(ip, "[]"), strconv.Itoa(DefaultLokiPort))
	}
	push := "http://" + host + DefaultLokiPushPath
	if _, err := loki.ParsePushURL(push); err != nil {
		r.fail("LOKI_IP", "want a host name or IP address (optionally :port): the address %v", err)
		return ""
	}
	return push
}

// labels parses LOKI_LABELS=key=value,key=value into dst, validating names
// with Loki's rules and refusing to override source and function.
func (r *reader) labels(name string, dst map[string]string) {
	v := r.str(name, "")
	if v == "" {
		return
	}
	var bad []string
	seen := map[string]bool{}
	for _, pair := range strings.Split(v, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		key, value, ok := strings.Cut(pair, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch {
		case !ok || value == "":
			bad = append(bad, fmt.Sprintf("%q is not key=value", pair))
		case loki.ValidateLabelName(key) != nil:
			bad = append(bad, fmt.Sprintf("label name %q is invalid: Loki label names match [a-zA-Z_][a-zA-Z0-9_]*, do not start with __ and have at most %d characters", key, loki.MaxLabelNameLength))
		case loki.ValidateLabel(key, value) != nil:
			bad = append(bad, fmt.Sprintf("label %q: %v", key, loki.ValidateLabel(key, value)))
		case key == "source" || key == "function" || key == "type" || key == "level":
			bad = append(bad, fmt.Sprintf("label %q is set by the extension and cannot be overridden", key))
		case seen[key]:
			bad = append(bad, fmt.Sprintf("label %q is given twice", key))
		default:
			seen[key] = true
			dst[key] = value
		}
	}
	// The extension may add type and level to every stream.
	if len(dst)+2 > 15 {
		bad = append(bad, fmt.Sprintf("%d labels plus type and level exceed Loki's default limit of 15 label names per stream", len(dst)))
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		r.fail(name, "%s", strings.Join(bad, "; "))
	}
}
