// Command testext is a minimal extension for the emulator's own tests. Its
// behaviour is set by environment variables; it prints what it sees.
//
// Every variable KEY can be set for one extension only as KEY.<file name>
// (set and empty turns it off there), so that two copies under different
// names can share the sandbox's environment and still differ.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// maxNextFailures is how many failed /next calls in a row make the test
// extension report exit/error and stop, as the real extension does.
const maxNextFailures = 3

var self = filepath.Base(os.Args[0])

// knob reads a setting: KEY.<file name> when set, else KEY.
func knob(key string) string {
	if v, ok := os.LookupEnv(key + "." + self); ok {
		return v
	}
	return os.Getenv(key)
}

func knobInt(key string) int {
	n, _ := strconv.Atoi(knob(key))
	return n
}

type api struct {
	base string // the Extensions API's base URL
	id   string // the identifier registration gave
}

func main() {
	x := api{base: "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2020-01-01/extension"}
	x.register()
	if port := knob("TESTEXT_LISTEN"); port != "" {
		listen(port)
	}
	if sub := knob("TESTEXT_SUBSCRIBE"); sub != "" {
		x.subscribe(sub)
	}
	if knob("TESTEXT_INIT_ERROR") != "" {
		x.reportError("init", "Extension.ConfigInvalid", "bad config")
		os.Exit(1)
	}
	x.loop()
}

func (x *api) register() {
	events := knob("TESTEXT_EVENTS")
	if events == "" {
		events = `["INVOKE","SHUTDOWN"]`
	}
	name := knob("TESTEXT_NAME")
	if name == "" {
		name = self
	}
	req, _ := http.NewRequest(http.MethodPost, x.base+"/register", strings.NewReader(`{"events":`+events+`}`))
	req.Header.Set("Lambda-Extension-Name", name)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println("register failed:", err)
		os.Exit(1)
	}
	body, _ := io.ReadAll(resp.Body)
	fmt.Println("register:", resp.StatusCode, string(body))
	x.id = resp.Header.Get("Lambda-Extension-Identifier")
}

func (x *api) subscribe(body string) {
	req, _ := http.NewRequest(http.MethodPut, "http://"+os.Getenv("AWS_LAMBDA_RUNTIME_API")+"/2022-07-01/telemetry", strings.NewReader(body))
	req.Header.Set("Lambda-Extension-Identifier", x.id)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		fmt.Println("subscribe:", resp.StatusCode, string(body))
	}
}

// reportError posts init/error or exit/error.
func (x *api) reportError(kind, errorType, message string) {
	req, _ := http.NewRequest(http.MethodPost, x.base+"/"+kind+"/error", strings.NewReader(`{"errorMessage":"`+message+`","errorType":"`+errorType+`"}`))
	req.Header.Set("Lambda-Extension-Identifier", x.id)
	req.Header.Set("Lambda-Extension-Function-Error-Type", errorType)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		fmt.Println(kind+"/error:", resp.StatusCode)
	}
}

// loop calls /next until SHUTDOWN and acts on each event as the knobs say.
func (x *api) loop() {
	failures := 0
	for n := 0; ; n++ {
		for i := range knobInt("TESTEXT_PRINT_BEFORE_NEXT") {
			fmt.Printf("before next %d: line %d\n", n, i)
		}
		status, body := x.next()
		if status != http.StatusOK {
			fmt.Println("next:", status, string(body))
			if status >= 500 {
				// Only failures in a row count: a good event resets the count.
				failures++
			}
			if failures >= maxNextFailures {
				x.reportError("exit", "Extension.NextFailed", "/next failed "+strconv.Itoa(failures)+" times in a row")
				os.Exit(1)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		failures = 0
		fmt.Println("event:", string(body))
		onEvent(body)
	}
}

func (x *api) next() (int, []byte) {
	req, _ := http.NewRequest(http.MethodGet, x.base+"/event/next", nil)
	req.Header.Set("Lambda-Extension-Identifier", x.id)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println("next failed:", err)
		os.Exit(1)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func onEvent(body []byte) {
	invoke := bytes.Contains(body, []byte(`"INVOKE"`))
	if knob("TESTEXT_EXIT_EARLY") != "" {
		os.Exit(0) // a crash: exiting outside SHUTDOWN, even with 0
	}
	if invoke && knob("TESTEXT_CRASH_ONCE") != "" {
		crashOnce()
	}
	if d := knobInt("TESTEXT_NEXT_DELAY_MS"); d > 0 && invoke {
		time.Sleep(time.Duration(d) * time.Millisecond) // "work" before /next
	}
	if bytes.Contains(body, []byte(`"SHUTDOWN"`)) {
		if knob("TESTEXT_IGNORE_SHUTDOWN") != "" {
			time.Sleep(time.Hour)
		}
		time.Sleep(50 * time.Millisecond)
		os.Exit(0)
	}
}

// crashOnce exits (a crash) unless an earlier life of this extension already
// did: it leaves a mark in /tmp, which Lambda keeps across a reset.
func crashOnce() {
	mark := filepath.Join(os.TempDir(), self+".crashed")
	if _, err := os.Stat(mark); err == nil {
		return
	}
	if err := os.WriteFile(mark, nil, 0o644); err != nil {
		fmt.Println("crash mark:", err)
	}
	fmt.Println("crashing on purpose")
	os.Exit(0)
}

// listen records every batch it receives to TESTEXT_RECORD, one per line,
// optionally slowly and failing the first TESTEXT_FAIL_FIRST ones.
func listen(port string) {
	slow := knobInt("TESTEXT_SLOW_MS")
	failFirst := knobInt("TESTEXT_FAIL_FIRST")
	record, err := os.OpenFile(knob("TESTEXT_RECORD"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Println("record:", err)
		os.Exit(1)
	}
	var seen atomic.Int64
	go func() {
		_ = http.ListenAndServe("127.0.0.1:"+port, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if n := seen.Add(1); n <= int64(failFirst) {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			time.Sleep(time.Duration(slow) * time.Millisecond)
			_, _ = record.Write(append(bytes.ReplaceAll(body, []byte("\n"), nil), '\n'))
		}))
	}()
	time.Sleep(20 * time.Millisecond)
}
