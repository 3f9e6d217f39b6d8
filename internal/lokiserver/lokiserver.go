// Package lokiserver runs a real Loki process for tests and the demo, on a
// free port with a temporary data directory, and reads lines back through
// Loki's query API.
package lokiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/freeport"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokibin"
	"github.com/lambda-loki/grafana-loki-extension/internal/outputbuf"
)

// Options configures Start.
type Options struct {
	// Binary is the Loki executable (default lokibin.Find()).
	Binary string
	// AuthEnabled makes Loki multi-tenant: pushes need X-Scope-OrgID.
	AuthEnabled bool
	// ConfigFile replaces the generated configuration; it is run with
	// -config.expand-env=true and LOKI_DATA_DIR, LOKI_HTTP_PORT and
	// LOKI_LISTEN_ADDRESS (127.0.0.1: a test listens on the loopback only) set.
	ConfigFile string
	// Output receives Loki's own log. May be nil.
	Output io.Writer
	// HighIngestionLimits raises Loki's per-tenant and per-stream ingestion
	// rates (defaults 4 MB/s and 3 MB/s, which answer 429 beyond about
	// 25 000 lines/s of 130 bytes on one stream), so that a benchmark
	// measures the extension, not Loki's limits.
	HighIngestionLimits bool
	// Env is more of Loki's environment (KEY=value), for a ConfigFile's
	// ${VAR} values.
	Env []string
	// Limits are more limits_config lines for the generated configuration,
	// each indented by two spaces (e.g. "\n  allow_structured_metadata:
	// false"), to run Loki as a deployment configured so would.
	Limits string
}

// highIngestionLimits are the limits_config lines of HighIngestionLimits.
const highIngestionLimits = `
  ingestion_rate_mb: 256
  ingestion_burst_size_mb: 512
  per_stream_rate_limit: 256MB
  per_stream_rate_limit_burst: 512MB`

// Server is a running Loki.
type Server struct {
	cmd     *exec.Cmd
	url     string
	dataDir string
	output  *outputbuf.Buffer
	exited  chan struct{}
	once    sync.Once
}

// config is a minimal single-process configuration (Loki's monolithic mode,
// https://grafana.com/docs/loki/latest/get-started/deployment-modes/#monolithic-mode),
// with limits that let a test read back everything it pushed.
const config = `auth_enabled: %t
server: {http_listen_address: 127.0.0.1, http_listen_port: %d, grpc_listen_address: 127.0.0.1, grpc_listen_port: 0, log_level: warn}
common:
  instance_addr: 127.0.0.1
  path_prefix: %[3]s
  storage: {filesystem: {chunks_directory: %[3]s/chunks, rules_directory: %[3]s/rules}}
  replication_factor: 1
  ring: {kvstore: {store: inmemory}}
schema_config:
  configs: [{from: 2024-01-01, store: tsdb, object_store: filesystem, schema: v13, index: {prefix: index_, period: 24h}}]
ingester: {lifecycler: {min_ready_duration: 0s, final_sleep: 0s}}
frontend: {scheduler_dns_lookup_period: 1s}
frontend_worker: {dns_lookup_duration: 1s}
limits_config:
  max_entries_limit_per_query: 500000
  reject_old_samples: false%[4]s
analytics: {reporting_enabled: false}
`

// Start runs Loki and waits until it answers /ready.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = lokibin.Find(); err != nil {
			return nil, err
		}
	}
	dataDir, err := os.MkdirTemp("", "loki-data-")
	if err != nil {
		return nil, fmt.Errorf("lokiserver: %w", err)
	}
	port, err := freeport.Pick()
	if err != nil {
		return nil, err
	}
	cfgFile := opts.ConfigFile
	if cfgFile == "" {
		cfgFile = filepath.Join(dataDir, "config.yaml")
		limits := opts.Limits
		if opts.HighIngestionLimits {
			limits += highIngestionLimits
		}
		if err := os.WriteFile(cfgFile, fmt.Appendf(nil, config, opts.AuthEnabled, port, dataDir, limits), 0o644); err != nil {
			return nil, fmt.Errorf("lokiserver: %w", err)
		}
	}
	s := &Server{url: "http://127.0.0.1:" + strconv.Itoa(port), dataDir: dataDir, output: &outputbuf.Buffer{Max: 16 << 10}, exited: make(chan struct{})}
	s.cmd = exec.Command(bin, "-config.file="+cfgFile, "-config.expand-env=true")
	s.cmd.Env = append(os.Environ(), "LOKI_DATA_DIR="+dataDir, "LOKI_HTTP_PORT="+strconv.Itoa(port), "LOKI_LISTEN_ADDRESS=127.0.0.1")
	s.cmd.Env = append(s.cmd.Env, opts.Env...)
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out io.Writer = s.output
	if opts.Output != nil {
		out = io.MultiWriter(s.output, opts.Output)
	}
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("lokiserver: starting %s: %w", bin, err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()

	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		if s.Ready(ctx) == nil {
			return s, nil
		}
		select {
		case <-s.exited:
			s.Stop()
			return nil, fmt.Errorf("lokiserver: Loki exited before it was ready: %s", s.output.String())
		case <-ctx.Done():
			s.Stop()
			return nil, fmt.Errorf("lokiserver: Loki not ready: %w: %s", ctx.Err(), s.output.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Attach returns a Server for a Loki someone else runs, for queries only;
// Stop does nothing to it.
func Attach(baseURL string) *Server {
	s := &Server{url: strings.TrimSuffix(baseURL, "/"), output: &outputbuf.Buffer{Max: 16 << 10}}
	s.once.Do(func() {})
	return s
}

// URL is Loki's base URL, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string { return s.url }

// PushURL is the article's push path on this Loki.
func (s *Server) PushURL() string { return s.url + "/api/prom/push" }

// PID is Loki's process ID.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Output is the tail of Loki's own log.
func (s *Server) Output() string { return s.output.String() }

// Ready returns nil when Loki answers /ready with 200.
func (s *Server) Ready(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/ready", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("lokiserver: /ready answered %d", resp.StatusCode)
	}
	return nil
}

// Stop ends Loki (SIGTERM, SIGKILL after 5 s) and removes its data. It is
// safe to call more than once.
func (s *Server) Stop() {
	s.once.Do(func() {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.exited
		}
		_ = os.RemoveAll(s.dataDir)
	})
}

// Line is one log line read back from Loki.
type Line struct {
	Labels map[string]string
	Time   time.Time
	Line   string
}

// Query is a log query over a time range.
type Query struct {
	LogQL      string
	Start, End time.Time
	// TenantID is sent as X-Scope-OrgID (for AuthEnabled).
	TenantID string
	// PageSize is the limit per request (default 5000).
	PageSize int
}

// Query returns every line matching q, oldest first, paging through Loki's
// per-request limit.
func (s *Server) Query(ctx context.Context, q Query) ([]Line, error) {
	if q.PageSize <= 0 {
		q.PageSize = 5000
	}
	var out []Line
	start := q.Start
	// Loki's start is inclusive: a page starting at the last timestamp seen
	// repeats the lines at that timestamp, in no fixed order. Skip those
	// already collected by content (a stream holds no two equal entries:
	// Loki drops exact duplicates).
	var boundary map[string]int
	key := func(l Line) string { return fmt.Sprint(l.Labels) + "\x00" + l.Line }
	for {
		page, err := s.queryRange(ctx, q, start)
		if err != nil {
			return nil, err
		}
		for _, l := range page {
			if l.Time.Equal(start) && boundary[key(l)] > 0 {
				boundary[key(l)]--
				continue
			}
			out = append(out, l)
		}
		if len(page) < q.PageSize {
			return out, nil
		}
		last := page[len(page)-1].Time
		if last.Equal(start) {
			return nil, fmt.Errorf("lokiserver: more than %d lines share the timestamp %s; raise PageSize", q.PageSize, last)
		}
		boundary = map[string]int{}
		for i := len(out) - 1; i >= 0 && out[i].Time.Equal(last); i-- {
			boundary[key(out[i])]++
		}
		start = last
	}
}

func (s *Server) queryRange(ctx context.Context, q Query, start time.Time) ([]Line, error) {
	v := url.Values{
		"query": {q.LogQL}, "start": {strconv.FormatInt(start.UnixNano(), 10)},
		"end": {strconv.FormatInt(q.End.UnixNano(), 10)}, "limit": {strconv.Itoa(q.PageSize)}, "direction": {"forward"},
	}
	var body struct {
		Data struct {
			Result []struct {
				Stream map[string]string `json:"stream"`
				Values [][2]string       `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := s.get(ctx, "/loki/api/v1/query_range?"+v.Encode(), q.TenantID, &body); err != nil {
		return nil, err
	}
	var out []Line
	for _, r := range body.Data.Result {
		for _, val := range r.Values {
			ns, err := strconv.ParseInt(val[0], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("lokiserver: bad timestamp %q", val[0])
			}
			out = append(out, Line{Labels: r.Stream, Time: time.Unix(0, ns), Line: val[1]})
		}
	}
	// Streams come one after another; merge them by time, keeping order.
	sortLines(out)
	if len(out) > q.PageSize {
		out = out[:q.PageSize]
	}
	return out, nil
}

func sortLines(lines []Line) {
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].Time.Before(lines[j].Time) })
}

// Sample is one point of a metric query's result.
type Sample struct {
	Labels map[string]string
	Time   time.Time
	Value  float64
}

// QueryMetric runs a LogQL metric query (e.g. with unwrap) over a range.
func (s *Server) QueryMetric(ctx context.Context, logql string, start, end time.Time, step time.Duration, tenant string) ([]Sample, error) {
	v := url.Values{
		"query": {logql}, "start": {strconv.FormatInt(start.UnixNano(), 10)},
		"end": {strconv.FormatInt(end.UnixNano(), 10)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}
	var body struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := s.get(ctx, "/loki/api/v1/query_range?"+v.Encode(), tenant, &body); err != nil {
		return nil, err
	}
	var out []Sample
	for _, r := range body.Data.Result {
		for _, val := range r.Values {
			ts, _ := val[0].(float64)
			str, _ := val[1].(string)
			f, err := strconv.ParseFloat(str, 64)
			if err != nil {
				return nil, fmt.Errorf("lokiserver: bad sample %v", val)
			}
			out = append(out, Sample{Labels: r.Metric, Time: time.Unix(0, int64(ts*1e9)), Value: f})
		}
	}
	return out, nil
}

// Instant runs a LogQL metric query at one instant through
// /loki/api/v1/query, the way a Grafana panel or an alert rule does, and
// returns one sample per series.
func (s *Server) Instant(ctx context.Context, logql string, at time.Time, tenant string) ([]Sample, error) {
	v := url.Values{"query": {logql}, "time": {strconv.FormatInt(at.UnixNano(), 10)}}
	var body struct {
		Data struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := s.get(ctx, "/loki/api/v1/query?"+v.Encode(), tenant, &body); err != nil {
		return nil, err
	}
	if body.Data.ResultType != "vector" {
		return nil, fmt.Errorf("lokiserver: %s: result type %q, want vector", logql, body.Data.ResultType)
	}
	out := make([]Sample, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		ts, _ := r.Value[0].(float64)
		str, _ := r.Value[1].(string)
		f, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("lokiserver: bad sample %v", r.Value)
		}
		out = append(out, Sample{Labels: r.Metric, Time: time.Unix(0, int64(ts*1e9)), Value: f})
	}
	return out, nil
}

// Get fetches a Loki API path (with its query string) and decodes the JSON
// answer into v; a non-200 answer is a *QueryError.
func (s *Server) Get(ctx context.Context, path, tenant string, v any) error {
	return s.get(ctx, path, tenant, v)
}

func (s *Server) get(ctx context.Context, path, tenant string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+path, nil)
	if err != nil {
		return fmt.Errorf("lokiserver: %w", err)
	}
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("lokiserver: query: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return &QueryError{Status: resp.StatusCode, Body: strings.TrimSpace(string(data))}
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("lokiserver: decoding query answer: %w", err)
	}
	return nil
}

// QueryError is a non-200 answer to a query.
type QueryError struct {
	Status int
	Body   string
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("lokiserver: query answered %d: %s", e.Status, e.Body)
}

// IsBadQuery reports whether err is Loki refusing a query as invalid (400).
func IsBadQuery(err error) bool {
	var qe *QueryError
	return errors.As(err, &qe) && qe.Status == http.StatusBadRequest
}
