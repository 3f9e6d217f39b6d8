package grafanacontainer

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/freeport"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/internal/outputbuf"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

const rulesDir = "loki/rules"

// prometheus runs Debian's Prometheus as a remote-write receiver, with no
// scrape targets: what it holds is what Loki's ruler wrote. It returns the
// base URL, or skips the test with a line when Prometheus is not installed
// (.ci/run installs it where it can).
func prometheus(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed (apt-get install prometheus): the recording rules are not checked")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global: {scrape_interval: 1m}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port), "--web.enable-remote-write-receiver")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &outputbuf.Buffer{Max: 16 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 30 s: %v\n%s", err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promQuery returns the value of each series of an instant PromQL query,
// by its function label.
func promQuery(ctx context.Context, base, query string) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?"+url.Values{"query": {query}}.Encode(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Status != "success" {
		return nil, fmt.Errorf("query %s: status %q: %v", query, body.Status, err)
	}
	out := map[string]float64{}
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v", query, r.Value)
		}
		out[r.Metric["function"]] = v
	}
	return out, nil
}

// quantile is Prometheus' (and LogQL's quantile_over_time's) φ-quantile:
// linear interpolation between the closest ranks.
func quantile(q float64, values []float64) float64 {
	v := slices.Sorted(slices.Values(values))
	rank := q * float64(len(v)-1)
	lo := math.Floor(rank)
	hi := math.Min(lo+1, float64(len(v)-1))
	w := rank - lo
	return v[int(lo)]*(1-w) + v[int(hi)]*w
}

// The stack's recording rules, loaded by the real Loki's ruler from
// loki/rules/ with the stack's config, turn the REPORT lines the real
// extension pushed into per-function series that the ruler remote-writes to
// a real Prometheus: invocations, duration percentiles, billed time, memory,
// cold starts and init time, timeouts and errors, each what the emulator
// reported.
func TestRecordingRulesReachPrometheus(t *testing.T) {
	prom := prometheus(t)
	srv := e2etest.StartLoki(t, lokiserver.Options{ConfigFile: absPath(t, lokiConfig), Env: []string{
		"LOKI_RULES_DIR=" + absPath(t, rulesDir), "LOKI_REMOTE_WRITE_URL=" + prom + "/api/v1/write",
		"LOKI_RULER_EVALUATION_INTERVAL=2s", "LOKI_REMOTE_WRITE_DEADLINE=500ms",
	}})
	function := e2etest.FunctionName(t)
	sb := e2etest.StartSandbox(t, sandbox.Config{FunctionName: function, FunctionTimeout: 600 * time.Millisecond,
		Env: e2etest.Env(t, srv.PushURL(), "SHIP_PLATFORM_LOGS=true")})
	fns := []sandbox.Function{
		{Lines: 2}, {Lines: 2, Duration: 80 * time.Millisecond}, {Lines: 1, Outcome: sandbox.Error},
		{Lines: 1, Outcome: sandbox.Timeout}, {Lines: 2}, // the timeout resets: the last is a cold start again
	}
	var durations []float64
	want := map[string]float64{"lambda:invocations:count5m": float64(len(fns)), "lambda:memory_size_mb:max5m": 128}
	metric := func(inv sandbox.InvokeResult, name string) (float64, bool) {
		m, _ := inv.Report["metrics"].(map[string]any)
		switch v := m[name].(type) {
		case float64:
			return v, true
		case int:
			return float64(v), true
		case int64:
			return float64(v), true
		}
		return 0, false
	}
	for i, fn := range fns {
		inv, err := sb.Invoke(t.Context(), fn)
		if err != nil {
			t.Fatalf("invoke %d: %v", i, err)
		}
		d, _ := metric(inv, "durationMs")
		durations = append(durations, d)
		billed, _ := metric(inv, "billedDurationMs")
		want["lambda:billed_duration_ms:sum5m"] += billed
		used, _ := metric(inv, "maxMemoryUsedMB")
		want["lambda:max_memory_used_mb:max5m"] = max(want["lambda:max_memory_used_mb:max5m"], used)
		if init, ok := metric(inv, "initDurationMs"); ok {
			want["lambda:cold_starts:count5m"]++
			want["lambda:init_duration_ms:max5m"] = max(want["lambda:init_duration_ms:max5m"], init)
		}
		switch inv.Status {
		case "timeout":
			want["lambda:timeouts:count5m"]++
		case "error", "failure":
			want["lambda:errors:count5m"]++
		}
	}
	if _, err := sb.Shutdown(t.Context(), "spindown"); err != nil {
		t.Fatal(err)
	}
	want["lambda:duration_ms:p50_5m"] = quantile(0.5, durations)
	want["lambda:duration_ms:p99_5m"] = quantile(0.99, durations)
	if want["lambda:cold_starts:count5m"] != 2 || want["lambda:timeouts:count5m"] != 1 || want["lambda:errors:count5m"] != 1 {
		t.Fatalf("the emulator's reports are not the scenario's: %v", want)
	}

	got := map[string]float64{}
	deadline := time.Now().Add(90 * time.Second)
	for {
		for name := range want {
			series, err := promQuery(t.Context(), prom, name)
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := series[function]; ok {
				got[name] = v
			}
		}
		same := len(got) == len(want)
		for name, w := range want {
			same = same && math.Abs(got[name]-w) < 1e-6
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90 s Prometheus holds %v for %s, want %v; Loki's log:\n%s", got, function, want, srv.Output())
		}
		time.Sleep(time.Second)
	}
}
