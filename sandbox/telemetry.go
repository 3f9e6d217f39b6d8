package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Buffering limits of the Telemetry API (docs/lambda-runtime-contract.md#subscribe).
const (
	minMaxItems, maxMaxItems, defMaxItems    = 1000, 10000, 10000
	minMaxBytes, maxMaxBytes, defMaxBytes    = 262144, 1048576, 262144
	minTimeoutMs, maxTimeoutMs, defTimeoutMs = 25, 30000, 1000
)

// TimeLayout is how Lambda writes event times: RFC 3339, UTC, milliseconds.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// event is one telemetry event, kept both decoded enough to route and
// encoded once per record shape.
type event struct {
	category string // platform, function or extension
	time     time.Time
	typ      string
	// record is the encoded record; recordAsString, when set, is the record
	// for subscribers with schema 2022-07-01 (JSON-format logs as strings).
	record, recordAsString json.RawMessage
}

func (e event) encode(schema string) []byte {
	rec := e.record
	if schema == "2022-07-01" && e.recordAsString != nil {
		rec = e.recordAsString
	}
	var b bytes.Buffer
	b.WriteString(`{"time":"`)
	b.WriteString(e.time.UTC().Format(TimeLayout))
	b.WriteString(`","type":`)
	typ, _ := json.Marshal(e.typ)
	b.Write(typ)
	b.WriteString(`,"record":`)
	b.Write(rec)
	b.WriteByte('}')
	return b.Bytes()
}

// emitPlatform emits a platform event with a JSON record.
func (s *Sandbox) emitPlatform(typ string, record any) {
	raw, _ := json.Marshal(record)
	s.emitEvent(event{category: "platform", time: time.Now(), typ: typ, record: raw})
}

// emit emits a function or extension record: a string, or for JSON-format
// logs an object (jsonObject non-empty), shipped as a string to subscribers
// of schema 2022-07-01.
func (s *Sandbox) emit(category string, at time.Time, text string, jsonObject string) event {
	ev := event{category: category, time: at, typ: category}
	if jsonObject != "" {
		ev.record = json.RawMessage(jsonObject)
		ev.recordAsString, _ = json.Marshal(jsonObject)
	} else {
		ev.record, _ = json.Marshal(text)
	}
	s.emitEvent(ev)
	return ev
}

func (s *Sandbox) emitEvent(ev event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.subscriptionClosed {
		// Events of init are replayed to every later subscriber
		// (docs/lambda-runtime-contract.md#delivery).
		s.initEvents = append(s.initEvents, ev)
	}
	for _, sub := range s.subs {
		if sub.types[ev.category] {
			sub.add(ev)
		}
	}
}

func (s *Sandbox) handleSubscribe(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ext := s.identify(w, r)
	if ext == nil {
		return
	}
	if s.cfg.TelemetryNotSupported {
		apiError(w, http.StatusAccepted, "Telemetry.NotSupported", "Telemetry API is not supported")
		return
	}
	if s.subscriptionClosed {
		apiError(w, 403, "Telemetry.SubscriptionClosed", "Telemetry API subscription is closed")
		return
	}
	var req struct {
		SchemaVersion string          `json:"schemaVersion"`
		Types         []string        `json:"types"`
		Buffering     *bufferingSpec  `json:"buffering"`
		Destination   destinationSpec `json:"destination"`
	}
	data, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err := json.Unmarshal(data, &req); err != nil {
		apiError(w, 400, "ValidationError", "invalid request body: %v", err)
		return
	}
	sub, problems := s.validateSubscription(req.SchemaVersion, req.Types, req.Buffering, req.Destination)
	if len(problems) > 0 {
		apiError(w, 400, "ValidationError", "%s", strings.Join(problems, "; "))
		return
	}
	for _, existing := range s.subs {
		if existing.name == ext.name {
			// RIE's answer to a second subscription (docs/lambda-runtime-contract.md#subscribe).
			apiError(w, 500, "InternalServerError", "Internal Server Error")
			return
		}
	}
	sub.name = ext.name
	sub.paused = s.frozen
	s.subs = append(s.subs, sub)
	go sub.run()
	for _, ev := range s.initEvents {
		if sub.types[ev.category] {
			sub.add(ev)
		}
	}
	rec, _ := json.Marshal(map[string]any{"name": ext.name, "state": "Subscribed", "types": req.Types})
	sub.add(event{category: "platform", time: time.Now(), typ: "platform.telemetrySubscription", record: rec})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`"OK"`))
}

type bufferingSpec struct {
	MaxItems  *int `json:"maxItems"`
	MaxBytes  *int `json:"maxBytes"`
	TimeoutMs *int `json:"timeoutMs"`
}

type destinationSpec struct {
	Protocol string `json:"protocol"`
	URI      string `json:"URI"`
}

func (s *Sandbox) validateSubscription(schema string, types []string, buf *bufferingSpec, dest destinationSpec) (*subscriber, []string) {
	var problems []string
	switch {
	case s.cfg.Mode == ModeManagedInstances && schema != "2025-01-29":
		problems = append(problems, fmt.Sprintf("schemaVersion must be 2025-01-29 on Managed Instances, got %q", schema))
	case !slices.Contains([]string{"2022-07-01", "2022-12-13", "2025-01-29"}, schema):
		problems = append(problems, fmt.Sprintf("schemaVersion %q is not supported", schema))
	}
	sub := &subscriber{
		schema: schema, types: map[string]bool{},
		maxItems: defMaxItems, maxBytes: defMaxBytes, timeout: defTimeoutMs * time.Millisecond,
		limit: s.cfg.TelemetryBufferBytes, wake: make(chan struct{}, 1), done: make(chan struct{}),
		sandbox: s,
	}
	if len(types) == 0 {
		problems = append(problems, "types should not be empty")
	}
	for _, t := range types {
		if t != "platform" && t != "function" && t != "extension" {
			problems = append(problems, fmt.Sprintf("type %q is not one of platform, function, extension", t))
		}
		sub.types[t] = true
	}
	check := func(name string, v *int, lo, hi int, dst *int) {
		if v == nil {
			return
		}
		if *v < lo || *v > hi {
			problems = append(problems, fmt.Sprintf("'/buffering/%s' must be >= %d and <= %d but found %d", name, lo, hi, *v))
			return
		}
		*dst = *v
	}
	if buf != nil {
		timeoutMs := defTimeoutMs
		check("maxItems", buf.MaxItems, minMaxItems, maxMaxItems, &sub.maxItems)
		check("maxBytes", buf.MaxBytes, minMaxBytes, maxMaxBytes, &sub.maxBytes)
		check("timeoutMs", buf.TimeoutMs, minTimeoutMs, maxTimeoutMs, &timeoutMs)
		sub.timeout = time.Duration(timeoutMs) * time.Millisecond
	}
	if dest.Protocol != "HTTP" {
		problems = append(problems, fmt.Sprintf("destination.protocol %q is not supported by this emulator; use HTTP", dest.Protocol))
	}
	u, err := url.Parse(dest.URI)
	switch {
	case err != nil || u.Scheme != "http":
		problems = append(problems, "Invalid destination: destination.URI must be an http URI")
	case u.Hostname() != "sandbox" && u.Hostname() != "sandbox.localdomain":
		problems = append(problems, "Invalid destination: destination.URI host must be sandbox.localdomain")
	case u.Port() == "":
		problems = append(problems, "URI port is not provided")
	case u.Port() == "9001":
		problems = append(problems, "URI port 9001 is reserved")
	default:
		// The sandbox names resolve to the loopback inside Lambda; here the
		// emulator rewrites them, keeping the path (RIE drops it; Lambda does not).
		u.Host = net.JoinHostPort("127.0.0.1", u.Port())
		sub.url = u.String()
	}
	return sub, problems
}

// Stats returns the telemetry counters so far, over every reset.
func (s *Sandbox) Stats() TelemetryStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.retired
	for _, sub := range s.subs {
		st = st.plus(sub.stats())
	}
	return st
}

// flushTelemetry delivers everything queued, at most for d, to the
// extensions still running: an exited one's listener is gone.
func (s *Sandbox) flushTelemetry(d time.Duration) {
	s.mu.Lock()
	var subs []*subscriber
	for _, sub := range s.subs {
		if !slices.ContainsFunc(s.exts, func(e *extension) bool { return e.name == sub.name && e.state == stateExited }) {
			subs = append(subs, sub)
		}
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for _, sub := range subs {
		wg.Add(1)
		go func() { defer wg.Done(); sub.flush(ctx) }()
	}
	wg.Wait()
}
