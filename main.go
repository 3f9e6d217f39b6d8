// Command grafana-loki-extension is an AWS Lambda extension that ships the
// function's logs to Grafana Loki through the Lambda Telemetry API.
//
// This file is the process: the version flag, signals and the exit code.
// The extension's life in the sandbox is package lifecycle.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/lambda-loki/grafana-loki-extension/lifecycle"
)

// version is stamped by the build (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-version" || os.Args[1] == "--version") {
		fmt.Println(version)
		return
	}
	// Lambda ends extensions with SHUTDOWN and then SIGKILL; a SIGTERM or an
	// interrupt comes from a person running it by hand, and is treated as a
	// shutdown.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := lifecycle.Run(ctx, lifecycle.Process{
		Name:    filepath.Base(os.Args[0]),
		Version: version,
		Lookup:  os.LookupEnv,
	})
	stop()
	os.Exit(code)
}
