// Command testruntime is a minimal runtime process for the emulator's own
// tests: a Runtime API loop whose behaviour each invocation's event sets.
// It answers with what it saw (the /next headers and its environment), so
// that tests can check the API strictly.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// event is an invocation's payload.
type event struct {
	// Action: ok (default), fail (POST /error), timeout (sleep), exit
	// (exit 2 without answering), wait (answer once WaitFor exists), or big
	// (a response over Lambda's 6 MB).
	Action  string   `json:"action"`
	WaitFor string   `json:"waitFor"`
	Lines   []string `json:"lines"`  // printed to stdout, one each
	Frames  []frame  `json:"frames"` // written to the telemetry log fd
}

type frame struct {
	JSON    bool   `json:"json"`
	Level   uint32 `json:"level"` // the frame type's level bits
	Message string `json:"message"`
}

// envSeen are the variables the answer reports.
var envSeen = []string{"AWS_LAMBDA_RUNTIME_API", "_HANDLER", "LAMBDA_TASK_ROOT", "AWS_LAMBDA_FUNCTION_NAME",
	"AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_REGION", "AWS_LAMBDA_LOG_FORMAT",
	"AWS_LAMBDA_LOG_LEVEL", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_EXECUTION_ENV", "TZ",
	"_LAMBDA_TELEMETRY_LOG_FD", "AWS_LAMBDA_INITIALIZATION_TYPE", "TESTRT_EXTRA"}

var base = "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime"

func main() {
	var fd *os.File
	if n, err := strconv.Atoi(os.Getenv("_LAMBDA_TELEMETRY_LOG_FD")); err == nil {
		fd = os.NewFile(uintptr(n), "telemetry")
	}
	for _, line := range strings.Split(os.Getenv("TESTRT_INIT_LINES"), "|") {
		if line != "" {
			fmt.Println(line)
		}
	}
	if ms, err := strconv.Atoi(os.Getenv("TESTRT_INIT_SLEEP_MS")); err == nil {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	switch os.Getenv("TESTRT_INIT") {
	case "error":
		post("/init/error", "Runtime.ConfigError", `{"errorMessage":"bad handler","errorType":"Runtime.ConfigError"}`)
		os.Exit(1)
	case "exit":
		os.Exit(3)
	}
	for {
		loop(fd)
	}
}

func loop(fd *os.File) {
	resp, err := http.Get(base + "/invocation/next")
	if err != nil {
		fmt.Fprintln(os.Stderr, "next:", err)
		os.Exit(1)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := resp.Header.Get("Lambda-Runtime-Aws-Request-Id")
	var ev event
	_ = json.Unmarshal(body, &ev)
	for _, line := range ev.Lines {
		fmt.Println(line)
	}
	for _, f := range ev.Frames {
		writeFrame(fd, f)
	}
	switch ev.Action {
	case "fail":
		post("/invocation/"+id+"/error", "Handled.Boom", `{"errorMessage":"boom","errorType":"Handled.Boom"}`)
		return
	case "timeout":
		time.Sleep(time.Hour)
	case "exit":
		os.Exit(2)
	case "big":
		post("/invocation/"+id+"/response", "", `"`+strings.Repeat("x", 6<<20)+`"`)
		return
	case "wait":
		for {
			if _, err := os.Stat(ev.WaitFor); err == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	seen := map[string]any{"headers": resp.Header, "env": env()}
	answer, _ := json.Marshal(seen)
	post("/invocation/"+id+"/response", "", string(answer))
}

func env() map[string]string {
	out := map[string]string{}
	for _, k := range envSeen {
		if v, ok := os.LookupEnv(k); ok {
			out[k] = v
		}
	}
	return out
}

// writeFrame writes one record in the framing of AWS's runtime clients.
func writeFrame(fd *os.File, f frame) {
	if fd == nil {
		return
	}
	typ := uint32(0xa55a0003)
	if f.JSON {
		typ = 0xa55a0002
	}
	var hdr [16]byte
	binary.BigEndian.PutUint32(hdr[0:], typ|f.Level)
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(f.Message)))
	binary.BigEndian.PutUint64(hdr[8:], uint64(time.Now().UnixMicro()))
	_, _ = fd.Write(append(hdr[:], f.Message...))
}

func post(path, errorType, body string) {
	req, _ := http.NewRequest(http.MethodPost, base+path, bytes.NewReader([]byte(body)))
	if errorType != "" {
		req.Header.Set("Lambda-Runtime-Function-Error-Type", errorType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "post:", err)
		os.Exit(1)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		fmt.Fprintln(os.Stderr, "post", path, "answered", resp.Status)
	}
}
