package telemetryApi

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// invocationEvents is one invocation's events as Lambda sends them: its
// platform.start, a function line, runtimeDone and report (extra is added
// to the report's metrics).
func invocationEvents(rid, extra string) string {
	return fmt.Sprintf(`{"time":"2026-01-02T03:04:05.000Z","type":"platform.start","record":{"requestId":"%[1]s","version":"$LATEST"}},`+
		`{"time":"2026-01-02T03:04:05.001Z","type":"function","record":"line of %[1]s\n"},`+
		`{"time":"2026-01-02T03:04:05.002Z","type":"platform.runtimeDone","record":{"requestId":"%[1]s","status":"success"}},`+
		`{"time":"2026-01-02T03:04:05.003Z","type":"platform.report","record":{"requestId":"%[1]s","status":"success","metrics":{"durationMs":1.25,"billedDurationMs":2,"memorySizeMB":128,"maxMemoryUsedMB":40%[2]s}}}`, rid, extra)
}

// metaByLine is the shared metadata of each queued line, by its first word
// and request ID ("line r1", "REPORT r1", "START r1", "init").
func metaByLine(t *testing.T, q *recordingSink) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, e := range q.Take(1000) {
		key := strings.Fields(e.Line)[0]
		if e.RequestID != "" {
			key += " " + e.RequestID
		}
		m := map[string]string{}
		for _, p := range e.Meta.Pairs() {
			m[p.Name] = p.Value
		}
		out[key] = m
	}
	return out
}

var testSandbox = []loki.Pair{{Name: MetaLogStream, Value: "2026/01/02/[$LATEST]abc"}, {Name: MetaFunctionVersion, Value: "$LATEST"}}

func TestLinesCarryTheirContext(t *testing.T) {
	sandbox := map[string]string{MetaLogStream: "2026/01/02/[$LATEST]abc", MetaFunctionVersion: "$LATEST"}
	with := func(kv ...string) map[string]string {
		m := maps.Clone(sandbox)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	report := func(kv ...string) map[string]string {
		return with(append([]string{MetaDurationMs, "1.25", MetaBilledDurationMs, "2", MetaMemorySizeMB, "128", MetaMaxMemoryUsedMB, "40", MetaStatus, "success"}, kv...)...)
	}
	all := ContextConfig{Sandbox: testSandbox, FunctionVersion: "$LATEST", Alias: true, ColdStart: true, Restored: true, Report: true}
	tests := []struct {
		name    string
		cfg     ContextConfig
		invoked map[string]string // request ID: invokedFunctionArn
		batch   string
		want    map[string]map[string]string
	}{
		{
			name: "on-demand: the first invocation is the cold start", cfg: all,
			batch: `{"time":"2026-01-02T03:04:04.000Z","type":"function","record":"init line\n"},` +
				invocationEvents("r1", `,"initDurationMs":150.5`) + "," + invocationEvents("r2", ""),
			want: map[string]map[string]string{
				"init":      sandbox,
				"line r1":   with(MetaColdStart, "true"),
				"START r1":  with(MetaColdStart, "true"),
				"REPORT r1": report(MetaColdStart, "true", MetaInitDurationMs, "150.5"),
				"line r2":   sandbox, "START r2": sandbox, "REPORT r2": report(),
			},
		},
		{
			name: "SnapStart: the first invocation after a restore", cfg: func() ContextConfig { c := all; c.ColdStart = false; return c }(),
			batch: `{"time":"2026-01-02T03:04:04.000Z","type":"platform.restoreStart","record":{}},` +
				invocationEvents("r1", `,"restoreDurationMs":80`) + "," + invocationEvents("r2", ""),
			want: map[string]map[string]string{
				"line r1": with(MetaRestored, "true"), "START r1": with(MetaRestored, "true"),
				"REPORT r1": report(MetaRestored, "true", MetaRestoreDurationMs, "80"),
				"line r2":   sandbox, "START r2": sandbox, "REPORT r2": report(),
			},
		},
		{
			name: "an alias the INVOKE names; a version equal to the sandbox's adds nothing",
			cfg:  func() ContextConfig { c := all; c.ColdStart = false; return c }(),
			invoked: map[string]string{
				"r1": "arn:aws:lambda:us-east-1:123456789012:function:fn:live",
				"r2": "arn:aws:lambda:us-east-1:123456789012:function:fn:$LATEST",
			},
			batch: invocationEvents("r1", "") + "," + invocationEvents("r2", ""),
			want: map[string]map[string]string{
				"line r1": with(MetaFunctionAlias, "live"), "START r1": with(MetaFunctionAlias, "live"),
				"REPORT r1": report(MetaFunctionAlias, "live"),
				"line r2":   sandbox, "START r2": sandbox, "REPORT r2": report(),
			},
		},
		{
			name: "a timed-out invocation's REPORT", cfg: ContextConfig{Report: true},
			batch: strings.Replace(invocationEvents("r1", ""), `"status":"success","metrics"`, `"status":"timeout","errorType":"Sandbox.Timeout","metrics"`, 1),
			want: map[string]map[string]string{
				"line r1": {}, "START r1": {},
				"REPORT r1": {MetaDurationMs: "1.25", MetaBilledDurationMs: "2", MetaMemorySizeMB: "128", MetaMaxMemoryUsedMB: "40", MetaStatus: "timeout", MetaErrorType: "Sandbox.Timeout"},
			},
		},
		{
			name: "all off", cfg: ContextConfig{},
			invoked: map[string]string{"r1": "arn:aws:lambda:us-east-1:123456789012:function:fn:live"},
			batch:   invocationEvents("r1", `,"initDurationMs":150.5`),
			want:    map[string]map[string]string{"line r1": {}, "START r1": {}, "REPORT r1": {}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newSink()
			l := NewListener(ListenerConfig{ShipPlatform: true, Context: tt.cfg}, q)
			for rid, arn := range tt.invoked {
				l.Invoked(rid, arn)
			}
			if code := post(l, "POST", "["+tt.batch+"]"); code != 200 {
				t.Fatalf("status %d", code)
			}
			got := metaByLine(t, q)
			for key, m := range tt.want {
				if rid, ok := strings.CutPrefix(key, "START "); ok {
					tt.want["END "+rid] = m // END carries what START does
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("lines %v, want %d", got, len(tt.want))
			}
			for key, want := range tt.want {
				if m, ok := got[key]; !ok || !maps.Equal(m, want) {
					t.Errorf("%s: %v (queued: %v), want %v", key, m, ok, want)
				}
			}
		})
	}
}

// The lines of one invocation share one metadata: no allocation per line.
func TestAnInvocationsLinesShareTheirMetadata(t *testing.T) {
	q := newSink()
	l := NewListener(ListenerConfig{Context: ContextConfig{Sandbox: testSandbox, ColdStart: true}}, q)
	batch := `[{"time":"2026-01-02T03:04:05.000Z","type":"platform.start","record":{"requestId":"r1"}}` +
		strings.Repeat(`,{"time":"2026-01-02T03:04:05.001Z","type":"function","record":"x\n"}`, 10) + "]"
	post(l, "POST", batch)
	entries := q.Take(100)
	if len(entries) != 10 || entries[0].Meta.Value(MetaColdStart) != "true" {
		t.Fatalf("%d entries, first %q", len(entries), entries[0].Meta.Pairs())
	}
	for _, e := range entries[1:] {
		if e.Meta != entries[0].Meta {
			t.Fatal("lines of one invocation carry metadata of their own")
		}
	}
}

func TestQualifier(t *testing.T) {
	for arn, want := range map[string]string{
		"arn:aws:lambda:us-east-1:123456789012:function:fn":          "",
		"arn:aws:lambda:us-east-1:123456789012:function:fn:live":     "live",
		"arn:aws:lambda:us-east-1:123456789012:function:fn:7":        "7",
		"arn:aws-cn:lambda:cn-north-1:123456789012:function:fn:blue": "blue",
		"":                                "",
		"not:an:arn:at:all:function:fn:x": "",
	} {
		if got := qualifier(arn); got != want {
			t.Errorf("qualifier(%q) = %q, want %q", arn, got, want)
		}
	}
}

// An INVOKE the extension sees after its platform.start was handled puts
// the alias on the invocation's later lines; the earlier ones keep none.
func TestAnAliasAfterTheStart(t *testing.T) {
	q := newSink()
	l := NewListener(ListenerConfig{ShipPlatform: true, Context: ContextConfig{Sandbox: testSandbox, FunctionVersion: "$LATEST", Alias: true}}, q)
	all := invocationEvents("r1", "")
	cut := strings.Index(all, `,{"time":"2026-01-02T03:04:05.002Z"`) // before runtimeDone
	post(l, "POST", "["+all[:cut]+"]")
	l.Invoked("r1", "arn:aws:lambda:us-east-1:123456789012:function:fn:live")
	post(l, "POST", "["+all[cut+1:]+"]")
	got := metaByLine(t, q)
	if len(got) != 4 {
		t.Fatalf("lines %v", got)
	}
	for key, want := range map[string]string{"START r1": "", "line r1": "", "END r1": "live", "REPORT r1": "live"} {
		if m, ok := got[key]; !ok || m[MetaFunctionAlias] != want {
			t.Errorf("%s: %v, want function_alias %q", key, m, want)
		}
	}
}
