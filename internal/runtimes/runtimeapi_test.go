package runtimes

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/outputbuf"
)

// runtimeAPI is a strict stand-in for Lambda's Runtime API, enough to run a
// built function's runtime process for one invocation: the first
// /invocation/next serves the event with Lambda's headers, later ones block
// as Lambda's do between invocations; /response, /error and /init/error are
// recorded. Any other call, or one for another request ID, is a violation
// that fails the test.
type runtimeAPI struct {
	t         *testing.T
	server    *httptest.Server
	requestID string
	event     []byte
	deadline  time.Time
	served    bool

	mu         sync.Mutex
	violations []string
	result     chan apiPost // the first /response, /error or /init/error
}

// apiPost is one result the runtime posted.
type apiPost struct {
	kind   string // "response", "error" or "init/error"
	body   []byte
	header http.Header
}

const runtimePath = "/2018-06-01/runtime/"

func newRuntimeAPI(t *testing.T, requestID string, event []byte, deadline time.Time) *runtimeAPI {
	api := &runtimeAPI{t: t, requestID: requestID, event: event, deadline: deadline, result: make(chan apiPost, 4)}
	api.server = httptest.NewServer(http.HandlerFunc(api.serve))
	t.Cleanup(api.server.Close)
	return api
}

func (a *runtimeAPI) violation(format string, args ...any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.violations = append(a.violations, fmt.Sprintf(format, args...))
}

func (a *runtimeAPI) serve(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, runtimePath)
	body, _ := io.ReadAll(r.Body)
	switch {
	case ok && path == "invocation/next" && r.Method == http.MethodGet:
		a.next(w, r)
	case ok && path == "init/error" && r.Method == http.MethodPost:
		a.post(w, apiPost{"init/error", body, r.Header})
	case ok && r.Method == http.MethodPost && strings.HasPrefix(path, "invocation/"):
		id, kind, _ := strings.Cut(strings.TrimPrefix(path, "invocation/"), "/")
		if id != a.requestID || (kind != "response" && kind != "error") {
			a.violation("%s %s: unknown request ID or call", r.Method, r.URL.Path)
			http.Error(w, `{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}`, http.StatusBadRequest)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			a.violation("%s %s: Content-Type %q, want application/json (both runtime clients send it)", r.Method, r.URL.Path, ct)
		}
		if kind == "error" && r.Header.Get("Lambda-Runtime-Function-Xray-Error-Cause") == "" {
			a.violation("%s %s: no Lambda-Runtime-Function-XRay-Error-Cause header", r.Method, r.URL.Path)
		}
		a.post(w, apiPost{kind, body, r.Header})
	default:
		a.violation("%s %s: not a Runtime API call", r.Method, r.URL.Path)
		http.NotFound(w, r)
	}
}

func (a *runtimeAPI) next(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	first := !a.served
	a.served = true
	a.mu.Unlock()
	if !first {
		<-r.Context().Done() // no second invocation: wait as Lambda would
		return
	}
	h := w.Header()
	h.Set("Lambda-Runtime-Aws-Request-Id", a.requestID)
	h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(a.deadline.UnixMilli(), 10))
	h.Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:test")
	h.Set("Lambda-Runtime-Trace-Id", "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1")
	h.Set("Content-Type", "application/json")
	_, _ = w.Write(a.event)
}

func (a *runtimeAPI) post(w http.ResponseWriter, p apiPost) {
	a.result <- p
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"status":"OK"}`)
}

// runOptions choose the runtime's environment for one run.
type runOptions struct {
	format  string // AWS_LAMBDA_LOG_FORMAT: Text or JSON
	level   string // AWS_LAMBDA_LOG_LEVEL ("" leaves it unset)
	fd      bool   // give the runtime a telemetry log fd
	handler string // _HANDLER (and the command's handler argument), default the function's
	// timeout, when set, is the invocation's: the run then expects no
	// result before twice that, and returns without one.
	timeout time.Duration
}

// runOutput is what one run of a runtime process produced.
type runOutput struct {
	post   apiPost
	stdout string
	frames []frame // records from the telemetry fd
}

// frame is one record from the telemetry log fd.
type frame struct {
	typ     uint32
	message string
}

// invoke starts fn's runtime process against a stand-in Runtime API that
// serves event once, waits for what it posts, then stops the process.
func invoke(t *testing.T, fn Function, event string, opts runOptions) runOutput {
	t.Helper()
	requestID := "8476a536-e9f4-11e8-9739-2dfe598c3fcd"
	timeout := opts.timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	api := newRuntimeAPI(t, requestID, []byte(event), time.Now().Add(timeout))
	handler := opts.handler
	if handler == "" {
		handler = fn.Handler
	}
	args := append([]string(nil), fn.Command[1:]...)
	if n := len(args); n > 0 && args[n-1] == fn.Handler {
		args[n-1] = handler // a runtime client that takes it as its argument
	}
	cmd := exec.Command(fn.Command[0], args...)
	cmd.Dir = fn.Dir
	cmd.Env = append(os.Environ(),
		"AWS_LAMBDA_RUNTIME_API="+strings.TrimPrefix(api.server.URL, "http://"),
		"_HANDLER="+handler, "LAMBDA_TASK_ROOT="+fn.Dir,
		"AWS_LAMBDA_FUNCTION_NAME="+fn.Name, "AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128", "AWS_REGION=us-east-1",
		"AWS_LAMBDA_LOG_FORMAT="+opts.format, "TZ=:UTC")
	if opts.level != "" {
		cmd.Env = append(cmd.Env, "AWS_LAMBDA_LOG_LEVEL="+opts.level)
	}
	cmd.Env = append(cmd.Env, fn.Env...)
	var stdout outputbuf.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var frames []frame
	framesDone := make(chan struct{})
	if opts.fd {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.ExtraFiles = []*os.File{w}
		cmd.Env = append(cmd.Env, "_LAMBDA_TELEMETRY_LOG_FD=3")
		go func() { defer close(framesDone); frames = readFrames(t, r) }()
		defer w.Close()
	} else {
		close(framesDone)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if opts.fd {
		cmd.ExtraFiles[0].Close() // the child has it; EOF comes when it exits
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var out runOutput
	silence := time.After(2 * opts.timeout)
	if opts.timeout == 0 {
		silence = nil
	}
	select {
	case <-silence:
	case out.post = <-api.result:
		if opts.timeout > 0 {
			t.Errorf("posted %s %s before the deadline had long passed; want nothing", out.post.kind, out.post.body)
		}
	case err := <-exited:
		t.Fatalf("the runtime exited before posting a result (%v); output:\n%s", err, stdout.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("no result from the runtime in 2 minutes; output:\n%s", stdout.String())
	}
	stopped := false
	if out.post.kind == "init/error" {
		select { // the runtime exits after an init error
		case <-exited:
			stopped = true
		case <-time.After(30 * time.Second):
			t.Errorf("the runtime did not exit after its init error")
		}
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if !stopped {
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Fatal("the runtime did not stop")
		}
	}
	<-framesDone
	out.stdout, out.frames = stdout.String(), frames
	api.mu.Lock()
	for _, v := range api.violations {
		t.Errorf("Runtime API: %s", v)
	}
	api.mu.Unlock()
	return out
}

// readFrames decodes the telemetry fd's frames: a 4-byte type, a 4-byte
// length, an 8-byte timestamp (microseconds), the message; big-endian.
func readFrames(t *testing.T, r io.ReadCloser) []frame {
	defer r.Close()
	var frames []frame
	head := make([]byte, 16)
	for {
		if _, err := io.ReadFull(r, head); err != nil {
			if err != io.EOF {
				t.Errorf("telemetry fd: a partial frame header: %v", err)
			}
			return frames
		}
		typ := binary.BigEndian.Uint32(head[0:4])
		if typ&^0x1f != 0xA55A0000 {
			t.Errorf("telemetry fd: frame type %#x is not 0xa55a00xx", typ)
		}
		micros := int64(binary.BigEndian.Uint64(head[8:16]))
		if d := time.Since(time.UnixMicro(micros)); d < 0 || d > 10*time.Minute {
			t.Errorf("telemetry fd: frame timestamp %d µs is %s from now", micros, d)
		}
		msg := make([]byte, binary.BigEndian.Uint32(head[4:8]))
		if _, err := io.ReadFull(r, msg); err != nil {
			t.Errorf("telemetry fd: a partial frame: %v", err)
			return frames
		}
		frames = append(frames, frame{typ, string(msg)})
	}
}
