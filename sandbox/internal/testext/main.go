// Command testext is a minimal extension for the emulator's own tests. Its
// behaviour is set by environment variables; it prints what it sees.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

func main() {
	api := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2020-01-01/extension"
	events := os.Getenv("TESTEXT_EVENTS")
	if events == "" {
		events = `["INVOKE","SHUTDOWN"]`
	}
	req, _ := http.NewRequest(http.MethodPost, api+"/register", strings.NewReader(`{"events":`+events+`}`))
	req.Header.Set("Lambda-Extension-Name", os.Getenv("TESTEXT_NAME"))
	if req.Header.Get("Lambda-Extension-Name") == "" {
		req.Header.Set("Lambda-Extension-Name", "testext")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println("register failed:", err)
		os.Exit(1)
	}
	body, _ := io.ReadAll(resp.Body)
	fmt.Println("register:", resp.StatusCode, string(body))
	id := resp.Header.Get("Lambda-Extension-Identifier")

	if port := os.Getenv("TESTEXT_LISTEN"); port != "" {
		listen(port)
	}
	if sub := os.Getenv("TESTEXT_SUBSCRIBE"); sub != "" {
		req, _ := http.NewRequest(http.MethodPut, "http://"+os.Getenv("AWS_LAMBDA_RUNTIME_API")+"/2022-07-01/telemetry", strings.NewReader(sub))
		req.Header.Set("Lambda-Extension-Identifier", id)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			fmt.Println("subscribe:", resp.StatusCode, string(body))
		}
	}
	if os.Getenv("TESTEXT_INIT_ERROR") != "" {
		req, _ := http.NewRequest(http.MethodPost, api+"/init/error", strings.NewReader(`{"errorMessage":"bad config","errorType":"Extension.ConfigInvalid"}`))
		req.Header.Set("Lambda-Extension-Identifier", id)
		req.Header.Set("Lambda-Extension-Function-Error-Type", "Extension.ConfigInvalid")
		_, _ = http.DefaultClient.Do(req)
		os.Exit(1)
	}
	printBeforeNext, _ := strconv.Atoi(os.Getenv("TESTEXT_PRINT_BEFORE_NEXT"))
	for n := 0; ; n++ {
		for i := range printBeforeNext {
			fmt.Printf("before next %d: line %d\n", n, i)
		}
		req, _ := http.NewRequest(http.MethodGet, api+"/event/next", nil)
		req.Header.Set("Lambda-Extension-Identifier", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println("next failed:", err)
			os.Exit(1)
		}
		body, _ := io.ReadAll(resp.Body)
		fmt.Println("event:", string(body))
		if os.Getenv("TESTEXT_EXIT_EARLY") != "" {
			os.Exit(0) // a crash: exiting outside SHUTDOWN, even with 0
		}
		if d, _ := strconv.Atoi(os.Getenv("TESTEXT_NEXT_DELAY_MS")); d > 0 && bytes.Contains(body, []byte(`"INVOKE"`)) {
			time.Sleep(time.Duration(d) * time.Millisecond) // "work" before /next
		}
		if bytes.Contains(body, []byte(`"SHUTDOWN"`)) {
			if os.Getenv("TESTEXT_IGNORE_SHUTDOWN") != "" {
				time.Sleep(time.Hour)
			}
			time.Sleep(50 * time.Millisecond)
			os.Exit(0)
		}
	}
}

// listen records every batch it receives to TESTEXT_RECORD, one per line,
// optionally slowly and failing the first TESTEXT_FAIL_FIRST ones.
func listen(port string) {
	slow, _ := strconv.Atoi(os.Getenv("TESTEXT_SLOW_MS"))
	failFirst, _ := strconv.Atoi(os.Getenv("TESTEXT_FAIL_FIRST"))
	record, err := os.OpenFile(os.Getenv("TESTEXT_RECORD"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
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
