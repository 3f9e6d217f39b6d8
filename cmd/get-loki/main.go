// Command get-loki builds the Loki binary the tests and the demo use, once,
// and prints its path.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/lambda-loki/grafana-loki-extension/internal/lokibin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	path, err := lokibin.Ensure(ctx, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "get-loki:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}
