package telemetryApi

import (
	"net/http"
	"slices"
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/filter"
	"github.com/lambda-loki/grafana-loki-extension/internal/lokitest"
	"github.com/lambda-loki/grafana-loki-extension/loglevel"
)

// The listener filters function and extension lines before they are
// queued, text and JSON alike, and never the lines the extension writes
// about a failed invocation.
func TestListenerAppliesTheFilter(t *testing.T) {
	batch := `[
	{"time":"2022-10-12T00:00:15.001Z","type":"function","record":"2022-10-12T00:00:15.001Z\tr1\tDEBUG\tapp: noise\n"},
	{"time":"2022-10-12T00:00:15.002Z","type":"function","record":"2022-10-12T00:00:15.002Z\tr1\tINFO\tapp: GET /health 200\n"},
	{"time":"2022-10-12T00:00:15.003Z","type":"function","record":"2022-10-12T00:00:15.003Z\tr1\tINFO\tapp: mail bob@example.com\n"},
	{"time":"2022-10-12T00:00:15.004Z","type":"function","record":"2022-10-12T00:00:15.004Z\tr1\tINFO\tlibrary chatter\n"},
	{"time":"2022-10-12T00:00:15.005Z","type":"function","record":{"timestamp":"2022-10-12T00:00:15.005Z","level":20,"message":"app: json noise"}},
	{"time":"2022-10-12T00:00:15.006Z","type":"function","record":{"timestamp":"2022-10-12T00:00:15.006Z","level":"ERROR","message":"app: to \"eve@example.org\""}},
	{"time":"2022-10-12T00:00:15.007Z","type":"extension","record":"app: extension wrote carol@example.net\n"},
	{"time":"2022-10-12T00:00:15.008Z","type":"extension","record":"[DEBUG] app: extension noise\n"},
	{"time":"2022-10-12T00:00:18.000Z","type":"platform.runtimeDone","record":{"requestId":"r1","status":"timeout","errorType":"Sandbox.Timeout","metrics":{"durationMs":3000}}}]`
	f, err := filter.New(filter.Config{MinLevel: loglevel.Info, Rules: []filter.Rule{
		{Type: filter.ExcludeAtMatch, Name: "drop_health", Pattern: `GET /health\b`},
		{Type: filter.IncludeAtMatch, Name: "app_only", Pattern: `app: `},
		{Type: filter.MaskSequences, Name: "mask_emails", Pattern: `[\w.+-]+@[\w-]+\.[\w.]+`, Placeholder: "[EMAIL]"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	q := newSink()
	l := NewListener(ListenerConfig{ShipExtension: true, Filter: f}, q)
	if code := post(l, http.MethodPost, batch); code != 200 {
		t.Fatalf("status %d", code)
	}
	want := []string{
		"2022-10-12T00:00:15.003Z\tr1\tINFO\tapp: mail [EMAIL]",
		`{"timestamp":"2022-10-12T00:00:15.006Z","level":"ERROR","message":"app: to \"[EMAIL]\""}`,
		"app: extension wrote [EMAIL]",
		"Task timed out: RequestId: r1 Status: timeout Error Type: Sandbox.Timeout Duration: 3000.00 ms",
	}
	if got := lokitest.Lines(q.Take(100)); !slices.Equal(got, want) {
		t.Fatalf("lines:\n%q\nwant\n%q", got, want)
	}
	if got, want := filter.Format(f.Counts()), "min_level=3 drop_health=1 app_only=1 mask_emails=3"; got != want {
		t.Fatalf("counts %s, want %s", got, want)
	}
	if n := l.Stats().Lines; n != 4 {
		t.Fatalf("the listener counted %d lines queued, want 4", n)
	}
}
