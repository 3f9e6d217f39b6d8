// Package grafanacontainer holds the tests of the local Grafana stack in this
// folder (compose.yaml and the files it mounts). The machine that runs them
// has no Docker engine, so they check what can be checked without one: the
// Loki config and every dashboard query against a real Loki, and that the
// files refer to each other consistently.
package grafanacontainer

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/internal/freeport"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokibin"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
)

const (
	lokiConfig        = "loki/config.yaml"
	composeFile       = "compose.yaml"
	dashboardFile     = "grafana/dashboards/lambda-logs.json"
	datasourcesFile   = "grafana/provisioning/datasources/loki.yaml"
	dashboardProvider = "grafana/provisioning/dashboards/dashboards.yaml"
	prometheusConfig  = "prometheus/prometheus.yml"
	otelConfig        = "otel-collector/config.yaml"
	alloyConfig       = "alloy/config.alloy"
	tempoConfig       = "tempo/config.yaml"
)

// ---------------------------------------------------------------------------
// Loki config against the real binary

func TestLokiConfigVerifies(t *testing.T) {
	bin := e2etest.LokiBinary(t)
	cfg := absPath(t, lokiConfig)
	tests := []struct {
		name string
		env  []string
	}{
		// What the container gets: nothing set, every default applies.
		{"container defaults", nil},
		// What internal/lokiserver and this test set.
		{"test runner values", []string{"LOKI_DATA_DIR=" + t.TempDir(), "LOKI_HTTP_PORT=3199", "LOKI_LISTEN_ADDRESS=127.0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "-config.file="+cfg, "-config.expand-env=true", "-verify-config")
			cmd.Env = append(withoutLokiVars(os.Environ()), tt.env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("loki -verify-config: %v\n%s", err, out)
			}
		})
	}
}

// withoutLokiVars drops the variables the config reads, so the "container
// defaults" case sees the defaults even if the developer's shell sets them.
func withoutLokiVars(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, "LOKI_") && !strings.HasPrefix(kv, "LOKI_BIN=") })
}

// startLoki runs a real Loki with this folder's config, as the test runner
// does (free port, temporary data directory), listening on the loopback only.
func startLoki(t *testing.T) *lokiserver.Server {
	t.Helper()
	// The config listens on 0.0.0.0 by default, which a container needs and a
	// test must not do; lokiserver sets LOKI_LISTEN_ADDRESS=127.0.0.1.
	return e2etest.StartLoki(t, lokiserver.Options{ConfigFile: absPath(t, lokiConfig)})
}

func TestLokiWithStackConfig(t *testing.T) {
	srv := startLoki(t)

	t.Run("takes a push and answers a query for it", func(t *testing.T) {
		now := time.Now()
		push(t, srv, []stream{{
			labels: map[string]string{"source": "lambda", "function": "stack-check"},
			lines:  []string{"hello from the stack test", "second line"},
		}}, now)
		got := e2etest.Query(t, srv, `{source="lambda", function="stack-check"}`, now, "")
		var lines []string
		for _, l := range got {
			lines = append(lines, l.Line)
		}
		if want := []string{"hello from the stack test", "second line"}; !slices.Equal(lines, want) {
			t.Fatalf("read back %q, want %q", lines, want)
		}
	})

	// The collector sends logs to http://loki:3100/otlp (+ /v1/logs); Loki
	// must take OTLP there and turn service.name into a label.
	t.Run("takes OTLP logs where the collector sends them", func(t *testing.T) {
		collectorURL := otelLokiEndpoint(t)
		u, err := url.Parse(collectorURL)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		body := fmt.Sprintf(`{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"otlp-check"}}]},
			"scopeLogs":[{"logRecords":[{"timeUnixNano":"%d","body":{"stringValue":"hello over otlp"}}]}]}]}`, now.UnixNano())
		resp, err := http.Post(srv.URL()+u.Path+"/v1/logs", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("OTLP push answered %d: %s", resp.StatusCode, answer)
		}
		got := e2etest.Query(t, srv, `{service_name="otlp-check"}`, now, "")
		if len(got) != 1 || got[0].Line != "hello over otlp" {
			t.Fatalf("read back %+v, want the one OTLP line", got)
		}
	})

	// compose.yaml's healthcheck runs `loki -health` (the image has no shell).
	t.Run("compose healthcheck command passes", func(t *testing.T) {
		hc := composeServices(t)["loki"].Healthcheck.Test
		if len(hc) < 2 || hc[0] != "CMD" || path.Base(hc[1]) != "loki" {
			t.Fatalf("loki healthcheck is %q, want [CMD /usr/bin/loki -health ...]", hc)
		}
		args := append(slices.Clone(hc[2:]), "-health.url="+srv.URL()+"/ready")
		out, err := exec.CommandContext(t.Context(), e2etest.LokiBinary(t), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("loki %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
}

// ---------------------------------------------------------------------------
// Dashboard queries against the real Loki

// reportLine is a REPORT line as telemetryApi writes it on the platform stream.
func reportLine(requestID, duration string, memUsed int, extra string) string {
	return "REPORT RequestId: " + requestID + "\tDuration: " + duration + " ms\tBilled Duration: 3000 ms" +
		"\tMemory Size: 128 MB\tMax Memory Used: " + strconv.Itoa(memUsed) + " MB" + extra
}

// Trace IDs of the dashboard test's two invocations, in the 32-hex form
// the extension sends.
const (
	traceR1 = "5759e988bd862e3fe1be46a994272793"
	traceR2 = "5f35ae120c0fec141ab77a00bc047aa2"
)

func TestDashboardQueriesRunOnLoki(t *testing.T) {
	srv := startLoki(t)
	fn := map[string]string{"source": "lambda", "function": "dash-fn"}
	platform := map[string]string{"source": "lambda", "function": "dash-fn", "type": "platform"}
	// Structured metadata as the extension sends it: the invocation's
	// request and trace IDs on each of its lines, none on an init line.
	r1 := map[string]string{"request_id": "r1", "trace_id": traceR1}
	r2 := map[string]string{"request_id": "r2", "trace_id": traceR2}
	// A REPORT line carries its figures too.
	report1 := map[string]string{"request_id": "r1", "trace_id": traceR1, "cold_start": "true", "duration_ms": "12.34", "billed_duration_ms": "3000",
		"memory_size_mb": "128", "max_memory_used_mb": "60", "init_duration_ms": "100.5", "status": "success"}
	report2 := map[string]string{"request_id": "r2", "trace_id": traceR2, "duration_ms": "3000", "billed_duration_ms": "3000",
		"memory_size_mb": "128", "max_memory_used_mb": "64", "status": "timeout", "error_type": "Sandbox.Timeout"}
	first := time.Now()
	last := push(t, srv, []stream{
		{labels: fn, lines: []string{
			"init",
			"hello",
			"[ERROR] something broke",
			"Task timed out: RequestId: r2 Status: timeout Duration: 3000.00 ms",
		}, metadata: []map[string]string{nil, r1, r1, r2}},
		{labels: platform, lines: []string{
			"START RequestId: r1 Version: $LATEST",
			"END RequestId: r1",
			// A cold start: the only REPORT with an Init Duration.
			reportLine("r1", "12.34", 60, "\tInit Duration: 100.50 ms"),
			reportLine("r2", "3000.00", 64, "\tStatus: timeout"),
		}, metadata: []map[string]string{r1, r1, report1, report2}},
	}, first)

	// What each query must give for dash-fn with everything above in one
	// window: one value, or one per request_id for the per-request table. A
	// dashboard query without an entry here fails the test, so a new panel
	// gets checked too.
	want := map[string]float64{
		"Log lines per function/A":       8,
		"Errors per function/A":          2,                         // the ERROR line and the timeout; not the REPORT with Status: timeout
		"Duration (REPORT)/A":            12.34 + 0.99*(3000-12.34), // p99, interpolated as Prometheus does
		"Duration (REPORT)/B":            (12.34 + 3000) / 2,
		"Billed duration (REPORT)/A":     6000,
		"Memory headroom (REPORT)/A":     64,
		"Memory headroom (REPORT)/B":     128,
		"Cold starts/A":                  1,
		"Init duration (REPORT)/A":       100.5,
		"Timeouts and errors (REPORT)/A": 1, // r2's timeout
		"Logs/A":                         8, // lines, not a metric
	}
	wantByRequest := map[string]map[string]float64{
		"Requests/A": {"r1": 5, "r2": 2}, // every line of the invocation; not the init line
		"Requests/B": {"r1": 1, "r2": 1}, // the ERROR line, the timeout
	}

	d := loadDashboard(t)
	seen := map[string]bool{}
	for _, q := range d.queries() {
		key := q.panel + "/" + q.refID
		seen[key] = true
		t.Run(key, func(t *testing.T) {
			logql := substituteVariables(q.expr)
			expected, ok := want[key]
			byRequest, perRequest := wantByRequest[key]
			if !ok && !perRequest {
				t.Fatalf("no expected value for %q (%s): add one to the test", key, logql)
			}
			// One evaluation just after the last line, so a 1m window holds
			// every line and the expected values do not depend on the step.
			at := last.Add(time.Second)
			if strings.HasPrefix(strings.TrimSpace(logql), "{") {
				lines, err := srv.Query(t.Context(), lokiserver.Query{LogQL: logql, Start: first.Add(-time.Minute), End: at})
				checkQueryErr(t, logql, err)
				if float64(len(lines)) != expected {
					t.Fatalf("%s returned %d lines, want %v", logql, len(lines), expected)
				}
				return
			}
			samples, err := srv.QueryMetric(t.Context(), logql, at, at, time.Minute, "")
			checkQueryErr(t, logql, err)
			if perRequest {
				got := map[string]float64{}
				for _, s := range samples {
					if s.Labels["function"] != "dash-fn" {
						continue
					}
					if _, dup := got[s.Labels["request_id"]]; dup {
						t.Fatalf("%s gave two series for request_id %q: %+v", logql, s.Labels["request_id"], samples)
					}
					got[s.Labels["request_id"]] = s.Value
				}
				if fmt.Sprint(got) != fmt.Sprint(byRequest) {
					t.Fatalf("%s gave %v per request_id for dash-fn (all samples %+v), want %v", logql, got, samples, byRequest)
				}
				return
			}
			var got []float64
			for _, s := range samples {
				if s.Labels["function"] == "dash-fn" {
					got = append(got, s.Value)
				}
			}
			if len(got) != 1 || math.Abs(got[0]-expected) > 1e-6 {
				t.Fatalf("%s gave %v for dash-fn (all samples %+v), want [%v]", logql, got, samples, expected)
			}
		})
	}
	for key := range want {
		if !seen[key] {
			t.Errorf("expected a dashboard query %q; it is gone from %s", key, dashboardFile)
		}
	}
	for key := range wantByRequest {
		if !seen[key] {
			t.Errorf("expected a dashboard query %q; it is gone from %s", key, dashboardFile)
		}
	}

	// The Tempo data source's link from a span back to its logs runs this
	// query, with the trace's ID in place of ${__trace.traceId}.
	t.Run("traces to logs", func(t *testing.T) {
		query := strings.ReplaceAll(provisionedTempo(t).JSONData.TracesToLogsV2.Query, "${__trace.traceId}", traceR2)
		lines, err := srv.Query(t.Context(), lokiserver.Query{LogQL: query, Start: first.Add(-time.Minute), End: last.Add(time.Second)})
		checkQueryErr(t, query, err)
		var got []string
		for _, l := range lines {
			got = append(got, l.Line)
		}
		if want := []string{"Task timed out: RequestId: r2 Status: timeout Duration: 3000.00 ms", reportLine("r2", "3000.00", 64, "\tStatus: timeout")}; !slices.Equal(got, want) {
			t.Fatalf("%s: %q, want %q", query, got, want)
		}
	})

	// The function variable lists label_values(<stream>, function).
	t.Run("function variable", func(t *testing.T) {
		v := d.variable(t, "function")
		var q struct{ Label, Stream string }
		if err := json.Unmarshal(v.Query, &q); err != nil || q.Label == "" || q.Stream == "" {
			t.Fatalf("function variable query %s: want {label, stream} (err %v)", v.Query, err)
		}
		params := url.Values{"query": {q.Stream}, "start": {strconv.FormatInt(first.Add(-time.Minute).UnixNano(), 10)},
			"end": {strconv.FormatInt(last.Add(time.Minute).UnixNano(), 10)}}
		var body struct{ Data []string }
		if err := srv.Get(t.Context(), "/loki/api/v1/label/"+url.PathEscape(q.Label)+"/values?"+params.Encode(), "", &body); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(body.Data, "dash-fn") {
			t.Fatalf("label values of %s for %s: %q, want dash-fn among them", q.Label, q.Stream, body.Data)
		}
	})
}

// substituteVariables replaces Grafana's variables with values Loki accepts,
// the way Grafana would for "All" and an empty search box.
func substituteVariables(expr string) string {
	return strings.NewReplacer(
		"$function", ".+",
		"$__interval", "1m", "$__auto", "1m", "$__range", "1m",
		"$search", "",
	).Replace(expr)
}

func checkQueryErr(t *testing.T, logql string, err error) {
	t.Helper()
	if lokiserver.IsBadQuery(err) {
		t.Fatalf("Loki refused the query as invalid: %s\n%v", logql, err)
	}
	if err != nil {
		t.Fatalf("%s: %v", logql, err)
	}
}

// ---------------------------------------------------------------------------
// Grafana provisioning and dashboard JSON

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []templateVar `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

// templateVar is a dashboard variable; Query is a string or, for the Loki
// variable editor, an object.
type templateVar struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Datasource *dsRef          `json:"datasource"`
	Query      json.RawMessage `json:"query"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *dsRef `json:"datasource"`
	GridPos    *struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	} `json:"gridPos"`
	Targets []struct {
		RefID      string `json:"refId"`
		Datasource *dsRef `json:"datasource"`
		Expr       string `json:"expr"`
	} `json:"targets"`
	FieldConfig struct {
		Overrides []struct {
			Properties []struct {
				ID    string          `json:"id"`
				Value json.RawMessage `json:"value"`
			} `json:"properties"`
		} `json:"overrides"`
	} `json:"fieldConfig"`
}

// links returns the URLs of the panel's data links (field overrides).
func (p panel) links(t *testing.T) []string {
	t.Helper()
	var urls []string
	for _, o := range p.FieldConfig.Overrides {
		for _, prop := range o.Properties {
			if prop.ID != "links" {
				continue
			}
			var links []struct{ Title, URL string }
			if err := json.Unmarshal(prop.Value, &links); err != nil {
				t.Fatalf("panel %q: links %s: %v", p.Title, prop.Value, err)
			}
			for _, l := range links {
				if l.Title == "" || l.URL == "" {
					t.Errorf("panel %q: link %+v needs a title and a URL", p.Title, l)
				}
				urls = append(urls, l.URL)
			}
		}
	}
	return urls
}

type dashboardQuery struct{ panel, refID, expr string }

func (d *dashboard) queries() []dashboardQuery {
	var out []dashboardQuery
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, dashboardQuery{p.Title, tg.RefID, tg.Expr})
		}
	}
	return out
}

func (d *dashboard) variable(t *testing.T, name string) templateVar {
	t.Helper()
	for _, v := range d.Templating.List {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("dashboard has no %q variable", name)
	return templateVar{}
}

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return &d
}

type datasource struct {
	Name     string `yaml:"name"`
	Type     string `yaml:"type"`
	UID      string `yaml:"uid"`
	URL      string `yaml:"url"`
	JSONData struct {
		DerivedFields []struct {
			Name          string `yaml:"name"`
			MatcherType   string `yaml:"matcherType"`
			MatcherRegex  string `yaml:"matcherRegex"`
			DatasourceUID string `yaml:"datasourceUid"`
			URL           string `yaml:"url"`
		} `yaml:"derivedFields"`
		TracesToLogsV2 struct {
			DatasourceUID string `yaml:"datasourceUid"`
			CustomQuery   bool   `yaml:"customQuery"`
			Query         string `yaml:"query"`
		} `yaml:"tracesToLogsV2"`
	} `yaml:"jsonData"`
}

type datasourceFile struct {
	APIVersion  int          `yaml:"apiVersion"`
	Datasources []datasource `yaml:"datasources"`
}

// provisionedDatasources reads the data sources file as Grafana sees it:
// with its environment variable expansion applied to every string.
func provisionedDatasources(t *testing.T) datasourceFile {
	t.Helper()
	data, err := os.ReadFile(datasourcesFile)
	if err != nil {
		t.Fatal(err)
	}
	var node yaml.Node
	if err := yaml.Unmarshal(data, &node); err != nil {
		t.Fatalf("%s: %v", datasourcesFile, err)
	}
	if err := expandLikeGrafana(&node); err != nil {
		t.Fatalf("%s: %v", datasourcesFile, err)
	}
	var f datasourceFile
	if err := node.Decode(&f); err != nil {
		t.Fatalf("%s: %v", datasourcesFile, err)
	}
	return f
}

// envReference is what a shell-style expansion takes for a variable:
// ${anything}, $NAME, or $ and one special character.
var envReference = regexp.MustCompile(`\$(\{[^}]*\}|[A-Za-z0-9_]+|[*#@!?-])`)

// expandLikeGrafana applies provisioning's variable expansion to every
// string of a YAML tree, where $$ stands for $. The stack sets no variable
// for Grafana to substitute, so any other reference is an error: it is a
// link variable such as ${__value.raw} that Grafana would replace with an
// empty string. See
// https://grafana.com/docs/grafana/latest/administration/provisioning/#use-of-the-special-character-
func expandLikeGrafana(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		parts := strings.Split(n.Value, "$$")
		for _, p := range parts {
			if m := envReference.FindString(p); m != "" {
				return fmt.Errorf("%q: Grafana would replace %s with an environment variable; write $%s", n.Value, m, m)
			}
		}
		n.Value = strings.Join(parts, "$")
	}
	for _, c := range n.Content {
		if err := expandLikeGrafana(c); err != nil {
			return err
		}
	}
	return nil
}

// provisionedOfType is the one data source of a type Grafana provisions.
func provisionedOfType(t *testing.T, typ string) datasource {
	t.Helper()
	var found []datasource
	for _, ds := range provisionedDatasources(t).Datasources {
		if ds.Type == typ {
			found = append(found, ds)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s provisions %d %s data sources, want 1", datasourcesFile, len(found), typ)
	}
	return found[0]
}

// provisionedLokiUID is the uid of the Loki data source Grafana provisions.
func provisionedLokiUID(t *testing.T) string {
	t.Helper()
	return provisionedOfType(t, "loki").UID
}

// provisionedTempo is the Tempo data source Grafana provisions.
func provisionedTempo(t *testing.T) datasource {
	t.Helper()
	return provisionedOfType(t, "tempo")
}

func TestDatasourceProvisioning(t *testing.T) {
	f := provisionedDatasources(t)
	if f.APIVersion != 1 {
		t.Errorf("apiVersion %d, want 1", f.APIVersion)
	}
	services := composeServices(t)
	uids := map[string]bool{}
	for _, ds := range f.Datasources {
		if ds.Name == "" || ds.Type == "" || ds.UID == "" {
			t.Errorf("data source %+v needs a name, type and a fixed uid", ds)
		}
		if uids[ds.UID] {
			t.Errorf("uid %q used twice", ds.UID)
		}
		uids[ds.UID] = true
		checkServiceURL(t, datasourcesFile, ds.URL, services)
	}
	loki, tempo := provisionedOfType(t, "loki"), provisionedTempo(t)
	if loki.UID != "loki" {
		t.Errorf("Loki data source uid %q, want loki (README and dashboard use it)", loki.UID)
	}

	// Grafana reaches Tempo at the port its config listens on.
	t.Run("Tempo data source", func(t *testing.T) {
		u, err := url.Parse(tempo.URL)
		if err != nil || u.Hostname() != "tempo" {
			t.Fatalf("Tempo data source URL %q: want http://tempo:<port>", tempo.URL)
		}
		if port := strconv.Itoa(loadTempoConfig(t).Server.HTTPListenPort); u.Port() != port {
			t.Errorf("Tempo data source URL %q, but %s listens on %s", tempo.URL, tempoConfig, port)
		}
	})

	// From a log line's trace_id structured metadata to its trace:
	// matcherType label reads the field by name, and an internal link's URL
	// is the query the target data source runs, here the ID itself. See
	// https://grafana.com/docs/grafana/latest/datasources/loki/configure-loki-data-source/#derived-fields
	t.Run("derived field links trace_id to Tempo", func(t *testing.T) {
		var found int
		for _, df := range loki.JSONData.DerivedFields {
			if df.MatcherRegex != "trace_id" {
				continue
			}
			found++
			if df.Name == "" || df.MatcherType != "label" || df.DatasourceUID != tempo.UID || df.URL != "${__value.raw}" {
				t.Errorf("derived field %+v: want a name, matcherType label, datasourceUid %q and url ${__value.raw}", df, tempo.UID)
			}
		}
		if found != 1 {
			t.Errorf("%d derived fields on trace_id, want 1", found)
		}
	})

	// Back from a span to its lines; the query itself runs on the real Loki
	// in TestDashboardQueriesRunOnLoki.
	t.Run("traces to logs", func(t *testing.T) {
		tl := tempo.JSONData.TracesToLogsV2
		if tl.DatasourceUID != loki.UID || !tl.CustomQuery || !strings.Contains(tl.Query, `trace_id="${__trace.traceId}"`) {
			t.Errorf("tracesToLogsV2 %+v: want datasourceUid %q and a custom query on trace_id=\"${__trace.traceId}\"", tl, loki.UID)
		}
	})
}

func TestExpandLikeGrafana(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"plain", "plain", true},
		{"$${__value.raw}", "${__value.raw}", true},
		{`{a="b"} | trace_id="$${__trace.traceId}"`, `{a="b"} | trace_id="${__trace.traceId}"`, true},
		{"${__value.raw}", "", false},
		{"$HOME/x", "", false},
		{"$1", "", false},
		{"$$$$", "$$", true},
		{"a $ alone", "a $ alone", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: tt.in}
			err := expandLikeGrafana(n)
			if (err == nil) != tt.ok || tt.ok && n.Value != tt.want {
				t.Fatalf("expandLikeGrafana(%q) = %q, %v; want %q, ok %t", tt.in, n.Value, err, tt.want, tt.ok)
			}
		})
	}
}

func TestDashboardJSON(t *testing.T) {
	d := loadDashboard(t)
	uid := provisionedLokiUID(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion <= 0 {
		t.Fatalf("dashboard needs uid, title and schemaVersion: got %q, %q, %d", d.UID, d.Title, d.SchemaVersion)
	}
	if len(d.Panels) == 0 {
		t.Fatal("dashboard has no panels")
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" && (v.Datasource == nil || v.Datasource.UID != uid) {
			t.Errorf("variable %q: datasource %+v, want uid %q", v.Name, v.Datasource, uid)
		}
	}
	d.variable(t, "function")

	ids := map[int]bool{}
	type cell struct{ x, y int }
	used := map[cell]string{}
	for _, p := range d.Panels {
		t.Run(p.Title, func(t *testing.T) {
			if p.Type == "" || p.Title == "" {
				t.Errorf("panel %d needs a type and a title", p.ID)
			}
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if p.Datasource == nil || p.Datasource.UID != uid || p.Datasource.Type != "loki" {
				t.Errorf("datasource %+v, want {loki %s}", p.Datasource, uid)
			}
			g := p.GridPos
			if g == nil || g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
				t.Fatalf("gridPos %+v: want w, h > 0 inside Grafana's 24 columns", g)
			}
			for x := g.X; x < g.X+g.W; x++ {
				for y := g.Y; y < g.Y+g.H; y++ {
					if other, ok := used[cell{x, y}]; ok {
						t.Fatalf("overlaps panel %q at column %d, row %d", other, x, y)
					}
					used[cell{x, y}] = p.Title
				}
			}
			if len(p.Targets) == 0 {
				t.Error("panel has no queries")
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" {
					t.Errorf("target %+v needs a refId and an expr", tg)
				}
				if tg.Datasource != nil && tg.Datasource.UID != uid {
					t.Errorf("target %s: datasource uid %q, want %q", tg.RefID, tg.Datasource.UID, uid)
				}
			}
			// A link into this dashboard must name it by its uid and set
			// only variables it has.
			for _, link := range p.links(t) {
				rest, ok := strings.CutPrefix(link, "/d/")
				if !ok {
					continue
				}
				if linkUID, _, _ := strings.Cut(rest, "/"); linkUID != d.UID {
					t.Errorf("link %s: dashboard uid %q, want %q", link, linkUID, d.UID)
				}
				for _, m := range regexp.MustCompile(`var-(\w+)=|\$\{(\w+):queryparam\}`).FindAllStringSubmatch(link, -1) {
					d.variable(t, m[1]+m[2])
				}
			}
		})
	}
}

// The Requests table's link sets the Logs panel's search box to the
// request ID: the Logs panel must filter on that variable.
func TestRequestsLinkFiltersTheLogsPanel(t *testing.T) {
	d := loadDashboard(t)
	var requests, logs *panel
	for i := range d.Panels {
		switch d.Panels[i].Title {
		case "Requests":
			requests = &d.Panels[i]
		case "Logs":
			logs = &d.Panels[i]
		}
	}
	if requests == nil || logs == nil {
		t.Fatal("the dashboard needs a Requests and a Logs panel")
	}
	if requests.Type != "table" {
		t.Errorf("Requests is a %s, want a table", requests.Type)
	}
	links := requests.links(t)
	if len(links) != 1 || !strings.Contains(links[0], "var-search=${__value.raw}") {
		t.Fatalf("Requests links %q: want one that sets var-search to the clicked request ID", links)
	}
	if len(logs.Targets) != 1 || !strings.Contains(logs.Targets[0].Expr, "|= `$search`") {
		t.Fatalf("Logs panel %+v does not filter on $search", logs.Targets)
	}
	for _, tg := range requests.Targets {
		if !strings.Contains(tg.Expr, "by (function, request_id)") || !strings.Contains(tg.Expr, `request_id != ""`) {
			t.Errorf("Requests %s: %s: want one series per function and request_id, without lines that have none", tg.RefID, tg.Expr)
		}
	}
}

func TestDashboardProvider(t *testing.T) {
	var f struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name    string `yaml:"name"`
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, dashboardProvider, &f)
	if f.APIVersion != 1 || len(f.Providers) != 1 {
		t.Fatalf("want apiVersion 1 and one provider, got %+v", f)
	}
	p := f.Providers[0]
	if p.Type != "file" {
		t.Errorf("provider type %q, want file", p.Type)
	}
	// The provider reads the container path where compose mounts our folder.
	if src := bindSourceOf(t, "grafana", p.Options.Path); filepath.Clean(src) != filepath.Dir(dashboardFile) {
		t.Errorf("provider path %s is mounted from %q, want ./%s", p.Options.Path, src, filepath.Dir(dashboardFile))
	}
	if src := bindSourceOf(t, "grafana", "/etc/grafana/provisioning"); filepath.Clean(src) != "grafana/provisioning" {
		t.Errorf("/etc/grafana/provisioning is mounted from %q, want ./grafana/provisioning", src)
	}
}

// ---------------------------------------------------------------------------
// compose.yaml

type service struct {
	Image       string   `yaml:"image"`
	Command     []string `yaml:"command"`
	Ports       []string `yaml:"ports"`
	Volumes     []string `yaml:"volumes"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

type compose struct {
	Name     string              `yaml:"name"`
	Services map[string]service  `yaml:"services"`
	Volumes  map[string]struct{} `yaml:"volumes"`
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	var c compose
	readYAML(t, composeFile, &c)
	return c
}

func composeServices(t *testing.T) map[string]service { t.Helper(); return loadCompose(t).Services }

func TestComposeFile(t *testing.T) {
	c := loadCompose(t)

	t.Run("images are pinned", func(t *testing.T) {
		// The stack the article had, with Alloy in Promtail's place.
		want := map[string]string{
			"grafana/loki":                         strings.TrimPrefix(lokibin.Version, "v"), // the Loki the tests run
			"grafana/grafana":                      "12.",
			"prom/prometheus":                      "v3.",
			"otel/opentelemetry-collector-contrib": "0.1",
			"grafana/alloy":                        "v1.",
			"grafana/tempo":                        "3.",
		}
		found := map[string]bool{}
		for name, s := range c.Services {
			repo, tag, ok := strings.Cut(s.Image, ":")
			if !ok || !regexp.MustCompile(`^v?\d+\.\d+\.\d+$`).MatchString(tag) {
				t.Errorf("%s: image %q is not pinned to an exact release", name, s.Image)
			}
			if strings.Contains(repo, "promtail") {
				t.Errorf("%s: Promtail reached end of life on 2 March 2026; use Alloy", name)
			}
			if prefix, ok := want[repo]; ok {
				found[repo] = true
				if !strings.HasPrefix(tag, prefix) {
					t.Errorf("%s: %s, want a %s:%s* tag", name, s.Image, repo, prefix)
				}
			}
		}
		for repo := range want {
			if !found[repo] {
				t.Errorf("no service runs %s", repo)
			}
		}
	})

	t.Run("ports bound to the loopback only", func(t *testing.T) {
		for name, s := range c.Services {
			for _, p := range s.Ports {
				if !strings.HasPrefix(p, "127.0.0.1:") {
					t.Errorf("%s: port %q is published on every interface; bind it to 127.0.0.1", name, p)
				}
			}
		}
	})

	t.Run("mounts exist", func(t *testing.T) {
		for name, s := range c.Services {
			for _, v := range s.Volumes {
				src, _, _ := strings.Cut(v, ":")
				switch {
				case strings.HasPrefix(src, "./"):
					if _, err := os.Stat(src); err != nil {
						t.Errorf("%s: bind mount %q: %v", name, v, err)
					}
				case strings.HasPrefix(src, "/"):
					t.Errorf("%s: %q mounts a host path outside this folder", name, v)
				default:
					if _, ok := c.Volumes[src]; !ok {
						t.Errorf("%s: named volume %q is not declared under volumes:", name, src)
					}
				}
			}
		}
	})

	// A config file named on a command line must be one that compose mounts.
	t.Run("commands read mounted files", func(t *testing.T) {
		configArg := regexp.MustCompile(`^(?:-{1,2}[\w.-]+=)?(/[\w./-]+\.(?:ya?ml|alloy))$`)
		for name, s := range c.Services {
			for _, arg := range s.Command {
				if m := configArg.FindStringSubmatch(arg); m != nil {
					bindSourceOf(t, name, m[1])
				}
			}
		}
		if !slices.Contains(c.Services["loki"].Command, "-config.expand-env=true") {
			t.Error("loki must run with -config.expand-env=true: its config uses ${VAR:-default}")
		}
		if src := bindSourceOf(t, "loki", "/etc/loki/config.yaml"); filepath.Clean(src) != lokiConfig {
			t.Errorf("loki reads %s, want ./%s (the config the tests verify)", src, lokiConfig)
		}
	})

	t.Run("depends_on names services", func(t *testing.T) {
		for name, s := range c.Services {
			for dep := range s.DependsOn {
				if _, ok := c.Services[dep]; !ok {
					t.Errorf("%s depends on unknown service %q", name, dep)
				}
			}
		}
	})

	// Docker's own check, with the compose plugin or the standalone
	// docker-compose (Debian's; .ci/run installs it). Neither needs an engine.
	t.Run("docker compose config", func(t *testing.T) {
		var cmd []string
		switch {
		case exec.Command("docker", "compose", "version").Run() == nil:
			cmd = []string{"docker", "compose"}
		case exec.Command("docker-compose", "version").Run() == nil:
			cmd = []string{"docker-compose"}
		default:
			t.Skip("neither the docker compose plugin nor docker-compose is installed here; the checks above stand in for them")
		}
		args := append(cmd[1:], "-f", composeFile, "config", "-q")
		out, err := exec.CommandContext(t.Context(), cmd[0], args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s config: %v\n%s", strings.Join(cmd, " "), err, out)
		}
	})
}

// bindSourceOf returns the ./ source that compose mounts at target (or at a
// directory above it) in service svc, failing the test if there is none.
func bindSourceOf(t *testing.T, svc, target string) string {
	t.Helper()
	s, ok := composeServices(t)[svc]
	if !ok {
		t.Fatalf("compose has no service %q", svc)
	}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || !strings.HasPrefix(parts[0], "./") {
			continue
		}
		dst := path.Clean(parts[1])
		if rel, ok := strings.CutPrefix(path.Clean(target), dst); ok && (rel == "" || strings.HasPrefix(rel, "/")) {
			src := path.Join(parts[0], rel)
			if _, err := os.Stat(src); err != nil {
				t.Errorf("%s reads %s, mounted from %s: %v", svc, target, src, err)
			}
			return src
		}
	}
	t.Errorf("%s reads %s, but compose mounts nothing from this folder there", svc, target)
	return ""
}

// ---------------------------------------------------------------------------
// Prometheus, collector and Alloy configs

// checkServiceURL fails if raw does not name a compose service (or the
// container itself) as its host, since only those resolve inside the stack.
func checkServiceURL(t *testing.T, file, raw string, services map[string]service) {
	t.Helper()
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		t.Errorf("%s: %q is not a URL or host:port", file, raw)
		return
	}
	if _, ok := services[u.Hostname()]; !ok && u.Hostname() != "localhost" {
		t.Errorf("%s: %q names host %q, which is no compose service", file, raw, u.Hostname())
	}
}

func TestPrometheusConfig(t *testing.T) {
	var f struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, prometheusConfig, &f)
	bindSourceOf(t, "prometheus", "/etc/prometheus/prometheus.yml")
	services := composeServices(t)
	jobs := map[string]bool{}
	for _, sc := range f.ScrapeConfigs {
		if sc.JobName == "" || jobs[sc.JobName] {
			t.Errorf("scrape config needs a unique job_name, got %q", sc.JobName)
		}
		jobs[sc.JobName] = true
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				checkServiceURL(t, prometheusConfig, target, services)
			}
		}
	}
	if !jobs["loki"] {
		t.Error("Prometheus should scrape Loki (rejected pushes show in its metrics)")
	}
	if !slices.Contains(services["prometheus"].Command, "--web.enable-otlp-receiver") {
		t.Error("the collector pushes OTLP metrics to Prometheus: it needs --web.enable-otlp-receiver")
	}
}

type otelFile struct {
	Receivers  map[string]yaml.Node `yaml:"receivers"`
	Processors map[string]yaml.Node `yaml:"processors"`
	Exporters  map[string]struct {
		Endpoint string `yaml:"endpoint"`
		TLS      struct {
			Insecure bool `yaml:"insecure"`
		} `yaml:"tls"`
	} `yaml:"exporters"`
	Service struct {
		Pipelines map[string]struct {
			Receivers  []string `yaml:"receivers"`
			Processors []string `yaml:"processors"`
			Exporters  []string `yaml:"exporters"`
		} `yaml:"pipelines"`
	} `yaml:"service"`
}

// otelLokiEndpoint is the endpoint of the collector's exporter to Loki.
func otelLokiEndpoint(t *testing.T) string {
	t.Helper()
	var f otelFile
	readYAML(t, otelConfig, &f)
	for name, e := range f.Exporters {
		if strings.HasSuffix(name, "/loki") {
			return e.Endpoint
		}
	}
	t.Fatalf("%s has no exporter named */loki", otelConfig)
	return ""
}

func TestOTelCollectorConfig(t *testing.T) {
	var f otelFile
	readYAML(t, otelConfig, &f)
	bindSourceOf(t, "otel-collector", "/etc/otelcol-contrib/config.yaml")
	services := composeServices(t)
	if len(f.Service.Pipelines) == 0 {
		t.Fatal("no pipelines")
	}
	for name, p := range f.Service.Pipelines {
		if len(p.Receivers) == 0 || len(p.Exporters) == 0 {
			t.Errorf("pipeline %s needs receivers and exporters", name)
		}
		check := func(kind string, ids []string, defined func(string) bool) {
			for _, id := range ids {
				if !defined(id) {
					t.Errorf("pipeline %s uses %s %q, which is not defined", name, kind, id)
				}
			}
		}
		check("receiver", p.Receivers, func(id string) bool { _, ok := f.Receivers[id]; return ok })
		check("processor", p.Processors, func(id string) bool { _, ok := f.Processors[id]; return ok })
		check("exporter", p.Exporters, func(id string) bool { _, ok := f.Exporters[id]; return ok })
	}
	for name, e := range f.Exporters {
		// The loki exporter left the contrib distribution; otlphttp and otlp
		// are the deprecated aliases of otlp_http and otlp_grpc.
		switch typ, _, _ := strings.Cut(name, "/"); typ {
		case "loki", "otlphttp":
			t.Errorf("exporter %s: use otlp_http (Loki 3 takes OTLP at /otlp)", name)
		case "otlp":
			t.Errorf("exporter %s: otlp is the deprecated name of otlp_grpc", name)
		}
		if e.Endpoint != "" {
			checkServiceURL(t, otelConfig, e.Endpoint, services)
		}
	}
	if u, err := url.Parse(otelLokiEndpoint(t)); err != nil || u.Path != "/otlp" {
		t.Errorf("Loki exporter endpoint %q: want http://loki:3100/otlp", otelLokiEndpoint(t))
	}

	// Traces go to Tempo's OTLP gRPC receiver, which has no TLS.
	t.Run("traces to Tempo", func(t *testing.T) {
		traces, ok := f.Service.Pipelines["traces"]
		if !ok {
			t.Fatal("no traces pipeline")
		}
		grpcPort := portOf(t, loadTempoConfig(t).Distributor.Receivers.OTLP.Protocols.GRPC.Endpoint)
		var toTempo []string
		for _, id := range traces.Exporters {
			e := f.Exporters[id]
			if typ, _, _ := strings.Cut(id, "/"); typ != "otlp_grpc" || !strings.HasPrefix(e.Endpoint, "tempo:") {
				continue
			}
			toTempo = append(toTempo, id)
			if got := portOf(t, e.Endpoint); got != grpcPort || !e.TLS.Insecure {
				t.Errorf("exporter %s: endpoint %q, tls.insecure %t; want tempo:%s (%s) without TLS", id, e.Endpoint, e.TLS.Insecure, grpcPort, tempoConfig)
			}
		}
		if len(toTempo) != 1 {
			t.Errorf("traces pipeline exports to %v; want one otlp_grpc exporter to tempo:<port>", traces.Exporters)
		}
	})
}

// ---------------------------------------------------------------------------
// Tempo

type tempoFile struct {
	Server struct {
		HTTPListenPort int `yaml:"http_listen_port"`
	} `yaml:"server"`
	Distributor struct {
		Receivers struct {
			OTLP struct {
				Protocols struct {
					GRPC struct {
						Endpoint string `yaml:"endpoint"`
					} `yaml:"grpc"`
					HTTP struct {
						Endpoint string `yaml:"endpoint"`
					} `yaml:"http"`
				} `yaml:"protocols"`
			} `yaml:"otlp"`
		} `yaml:"receivers"`
	} `yaml:"distributor"`
	Storage struct {
		Trace struct {
			Backend string `yaml:"backend"`
			WAL     struct {
				Path string `yaml:"path"`
			} `yaml:"wal"`
			Local struct {
				Path string `yaml:"path"`
			} `yaml:"local"`
		} `yaml:"trace"`
	} `yaml:"storage"`
}

func loadTempoConfig(t *testing.T) tempoFile {
	t.Helper()
	var f tempoFile
	readYAML(t, tempoConfig, &f)
	return f
}

// portOf is the port of a host:port.
func portOf(t *testing.T, hostPort string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Fatalf("%q is not host:port: %v", hostPort, err)
	}
	return port
}

func TestTempoConfig(t *testing.T) {
	f := loadTempoConfig(t)
	tempo := composeServices(t)["tempo"]
	if src := bindSourceOf(t, "tempo", "/etc/tempo/config.yaml"); filepath.Clean(src) != tempoConfig {
		t.Errorf("tempo reads %s, want ./%s", src, tempoConfig)
	}
	if !slices.Contains(tempo.Command, "-config.file=/etc/tempo/config.yaml") {
		t.Errorf("tempo command %q does not read /etc/tempo/config.yaml", tempo.Command)
	}
	if f.Server.HTTPListenPort == 0 {
		t.Error("server.http_listen_port is not set")
	}
	// Other containers send to the receiver: it must not listen on the
	// container's loopback only.
	if host, _, err := net.SplitHostPort(f.Distributor.Receivers.OTLP.Protocols.GRPC.Endpoint); err != nil || host != "0.0.0.0" {
		t.Errorf("OTLP gRPC receiver endpoint %q: want 0.0.0.0:<port>", f.Distributor.Receivers.OTLP.Protocols.GRPC.Endpoint)
	}
	// What Tempo writes must be on its named volume, or it is lost with the
	// container.
	var dataDir string
	for _, v := range tempo.Volumes {
		if src, dst, _ := strings.Cut(v, ":"); !strings.HasPrefix(src, "./") {
			dataDir = strings.TrimSuffix(dst, ":rw")
		}
	}
	if f.Storage.Trace.Backend != "local" || dataDir == "" {
		t.Fatalf("storage backend %q, data volume %q: want local storage on a named volume", f.Storage.Trace.Backend, dataDir)
	}
	for _, p := range []string{f.Storage.Trace.WAL.Path, f.Storage.Trace.Local.Path} {
		if !strings.HasPrefix(p, dataDir+"/") {
			t.Errorf("storage path %q is not on the data volume %s", p, dataDir)
		}
	}

	// Tempo's own check, where a Tempo binary is at hand (TEMPO_BIN); there
	// is no Docker here to run the image.
	t.Run("tempo -config.verify", func(t *testing.T) {
		out, err := exec.CommandContext(t.Context(), tempoBinary(t), "-config.file="+absPath(t, tempoConfig), "-config.verify=true").CombinedOutput()
		if err != nil {
			t.Fatalf("tempo -config.verify: %v\n%s", err, out)
		}
	})
}

// tempoBinary is $TEMPO_BIN, or the test is skipped: unlike Loki, the
// project does not build Tempo.
func tempoBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("TEMPO_BIN")
	if bin == "" {
		t.Skip("set TEMPO_BIN to a Tempo 3 binary to run the stack's Tempo config")
	}
	return bin
}

// TestTempoFindsTheLoggedTraceID runs Tempo with the stack's config (its
// paths and ports moved to a temporary directory and free loopback ports),
// sends it a span over OTLP as the collector does, and reads the trace back
// by the 32-hex ID the extension writes as trace_id: the request Grafana
// makes when the derived field's link is followed.
func TestTempoFindsTheLoggedTraceID(t *testing.T) {
	bin := tempoBinary(t)
	f := loadTempoConfig(t)
	data, err := os.ReadFile(tempoConfig)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	free := func() string {
		port, err := freeport.Pick()
		if err != nil {
			t.Fatal(err)
		}
		return strconv.Itoa(port)
	}
	httpPort, otlpHTTP := free(), "127.0.0.1:"+free()
	cfg := strings.NewReplacer(
		"/var/tempo", dir,
		f.Distributor.Receivers.OTLP.Protocols.GRPC.Endpoint, "127.0.0.1:"+free(),
		f.Distributor.Receivers.OTLP.Protocols.HTTP.Endpoint, otlpHTTP,
	).Replace(string(data))
	// Paths the stack's config leaves at their defaults under /var/tempo.
	cfg += fmt.Sprintf("\nlive_store:\n  wal:\n    path: %[1]s/live-store/traces\n  shutdown_marker_dir: %[1]s/live-store/shutdown-marker\n"+
		"backend_scheduler:\n  local_work_path: %[1]s/work\n", dir)
	cfgFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-config.file="+cfgFile, "-server.http-listen-port="+httpPort,
		"-server.grpc-listen-port="+free(), "-memberlist.bind-port="+free())
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Tempo drains for a while on SIGTERM; the test's data is thrown away.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	api := "http://127.0.0.1:" + httpPort
	eventually := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !ok(); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: gave up after 60 s; Tempo's output:\n%s", what, out.String())
			}
		}
	}
	get := func(path string) (int, []byte) {
		resp, err := http.Get(api + path)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	eventually("Tempo ready", func() bool { status, _ := get("/ready"); return status == http.StatusOK })

	// OTLP/JSON writes IDs in hex; Tempo's answer has them in base64.
	now := time.Now()
	span := fmt.Sprintf(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"dash-fn"}}]},
		"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"53995c3f42cd8ad8","name":"invoke","kind":2,
		"startTimeUnixNano":"%d","endTimeUnixNano":"%d"}]}]}]}`, traceR1, now.UnixNano(), now.Add(5*time.Millisecond).UnixNano())
	resp, err := http.Post("http://"+otlpHTTP+"/v1/traces", "application/json", strings.NewReader(span))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("OTLP push answered %d: %s", resp.StatusCode, answer)
	}

	var trace struct {
		Trace struct {
			ResourceSpans []struct {
				ScopeSpans []struct {
					Spans []struct {
						TraceID []byte `json:"traceId"` // base64 in JSON
						Name    string `json:"name"`
					} `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		} `json:"trace"`
	}
	eventually("the trace by its ID", func() bool {
		status, body := get("/api/v2/traces/" + traceR1)
		return status == http.StatusOK && json.Unmarshal(body, &trace) == nil && len(trace.Trace.ResourceSpans) > 0
	})
	rs := trace.Trace.ResourceSpans[0]
	if len(rs.ScopeSpans) == 0 || len(rs.ScopeSpans[0].Spans) != 1 {
		t.Fatalf("trace %s: %+v, want the one span", traceR1, trace)
	}
	if got := hex.EncodeToString(rs.ScopeSpans[0].Spans[0].TraceID); got != traceR1 {
		t.Fatalf("Tempo found trace %s under %s", got, traceR1)
	}
}

// The Alloy syntax has no parser in this module's dependencies, so this reads
// the few things that can go wrong between files: block references, the URL
// and the tailed path.
func TestAlloyConfig(t *testing.T) {
	data, err := os.ReadFile(alloyConfig)
	if err != nil {
		t.Fatal(err)
	}
	src := stripAlloyComments(string(data))
	if err := balanced(src); err != nil {
		t.Fatalf("%s: %v", alloyConfig, err)
	}
	blocks := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s*([a-z_]+(?:\.[a-z_]+)+)\s+"([\w-]+)"\s*\{`).FindAllStringSubmatch(src, -1) {
		blocks[m[1]+"."+m[2]] = true
	}
	if !blocks["loki.write.local"] {
		t.Fatalf("%s: no loki.write \"local\" block (found %v)", alloyConfig, blocks)
	}
	// References look like loki.write.local.receiver: a block plus an export.
	for _, m := range regexp.MustCompile(`=\s*\[?\s*((?:local|loki|otelcol|discovery)\.[\w.]+)\.(receiver|targets|input)\b`).FindAllStringSubmatch(src, -1) {
		if !blocks[m[1]] {
			t.Errorf("%s refers to %s.%s, but no such block is defined", alloyConfig, m[1], m[2])
		}
	}
	services := composeServices(t)
	for _, m := range regexp.MustCompile(`url\s*=\s*"([^"]+)"`).FindAllStringSubmatch(src, -1) {
		checkServiceURL(t, alloyConfig, m[1], services)
	}
	for _, m := range regexp.MustCompile(`"__path__"\s*=\s*"([^"]+)"`).FindAllStringSubmatch(src, -1) {
		bindSourceOf(t, "alloy", path.Dir(m[1]))
	}
	bindSourceOf(t, "alloy", "/etc/alloy/config.alloy")
}

func stripAlloyComments(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if i := strings.Index(line, "//"); i >= 0 && !strings.Contains(line[:i], `"`) {
			line = line[:i] + "\n"
		}
		b.WriteString(line)
	}
	return b.String()
}

// balanced checks that braces and brackets pair up outside string literals.
func balanced(s string) error {
	var stack []rune
	inString := false
	for i, r := range s {
		switch {
		case inString:
			if r == '"' && (i == 0 || s[i-1] != '\\') {
				inString = false
			}
		case r == '"':
			inString = true
		case r == '{' || r == '[' || r == '(':
			stack = append(stack, r)
		case r == '}' || r == ']' || r == ')':
			open := map[rune]rune{'}': '{', ']': '[', ')': '('}[r]
			if len(stack) == 0 || stack[len(stack)-1] != open {
				return fmt.Errorf("unbalanced %q at byte %d", r, i)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if inString || len(stack) > 0 {
		return fmt.Errorf("unclosed %q", stack)
	}
	return nil
}

// ---------------------------------------------------------------------------
// helpers

type stream struct {
	labels map[string]string
	lines  []string
	// metadata is each line's structured metadata, by position; a missing
	// or nil one sends none, as for an init line.
	metadata []map[string]string
}

// push sends the streams to Loki in its v1 JSON format, one millisecond apart
// from start, and returns the last timestamp used. Structured metadata goes
// in a value's third element. Reading back is what shows a push worked (a
// wrong body can get 204 and be dropped).
func push(t *testing.T, srv *lokiserver.Server, streams []stream, start time.Time) time.Time {
	t.Helper()
	type v1Stream struct {
		Stream map[string]string `json:"stream"`
		Values [][]any           `json:"values"`
	}
	var body struct {
		Streams []v1Stream `json:"streams"`
	}
	ts := start
	for _, s := range streams {
		v := v1Stream{Stream: s.labels}
		for i, l := range s.lines {
			ts = ts.Add(time.Millisecond)
			value := []any{strconv.FormatInt(ts.UnixNano(), 10), l}
			if i < len(s.metadata) && s.metadata[i] != nil {
				value = append(value, s.metadata[i])
			}
			v.Values = append(v.Values, value)
		}
		body.Streams = append(body.Streams, v)
	}
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(srv.URL()+"/loki/api/v1/push", "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		answer, _ := io.ReadAll(resp.Body)
		t.Fatalf("push answered %d: %s", resp.StatusCode, answer)
	}
	return ts
}

// readYAML decodes a file of this folder into v; keys v does not list are
// ignored, since each test reads only what it checks.
func readYAML(t *testing.T, file string, v any) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func absPath(t *testing.T, rel string) string {
	t.Helper()
	p, err := filepath.Abs(rel)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
