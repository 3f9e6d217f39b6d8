// Command bootstrap is telemetry-api-starter-go, the article's Go test
// function: it writes the lines of the functions' shared spec with log/slog
// (a text handler in the text log format, a JSON one with
// AWS_LAMBDA_LOG_FORMAT=JSON; Go's runtime passes stdout through as it is),
// then succeeds, fails or runs past its deadline as the event asks.
package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// Event is the invocation's payload.
type Event struct {
	Marker string `json:"marker"`
	// Action is ok (default), fail or timeout.
	Action string `json:"action"`
}

// Response is what an ok invocation returns.
type Response struct {
	OK     bool   `json:"ok"`
	Marker string `json:"marker"`
}

// timeLayout is how Lambda's runtimes write a record's time: RFC 3339, UTC,
// milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z"

func main() {
	opts := &slog.HandlerOptions{Level: level(os.Getenv("AWS_LAMBDA_LOG_LEVEL")), ReplaceAttr: lambdaKeys}
	var h slog.Handler = slog.NewTextHandler(os.Stdout, opts)
	if strings.EqualFold(os.Getenv("AWS_LAMBDA_LOG_FORMAT"), "JSON") {
		h = slog.NewJSONHandler(os.Stdout, opts)
	}
	// The structured line is JSON in either format.
	structured := slog.New(slog.NewJSONHandler(os.Stdout, opts))
	lambda.Start(func(ctx context.Context, ev Event) (*Response, error) {
		return handle(ctx, ev, slog.New(h), structured)
	})
}

// handle writes the spec's seven lines, each naming the marker, then ends
// as the event's action says.
func handle(ctx context.Context, ev Event, log, structured *slog.Logger) (*Response, error) {
	m := ev.Marker
	if m == "" {
		m = "none"
	}
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		// Each record names its invocation, as Lambda's JSON records do: on
		// Managed Instances that is how concurrent invocations are told apart.
		log, structured = log.With("requestId", lc.AwsRequestID), structured.With("requestId", lc.AwsRequestID)
	}
	log.Debug("debug line " + m)
	log.Info("info line " + m)
	log.Warn("warn line " + m)
	log.Error("error line " + m)
	log.Info("multi line " + m + "\nsecond line\nthird line")
	structured.Info("structured line "+m, "marker", m)
	log.Info("contact alice@example.com " + m)
	switch ev.Action {
	case "fail":
		return nil, errors.New("boom " + m)
	case "timeout":
		deadline, ok := ctx.Deadline()
		if !ok {
			deadline = time.Now()
		}
		time.Sleep(time.Until(deadline) + time.Minute)
	}
	return &Response{OK: true, Marker: m}, nil
}

// lambdaKeys names slog's keys as Lambda's JSON records do: timestamp (UTC,
// milliseconds) and message.
func lambdaKeys(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.TimeKey:
		return slog.String("timestamp", a.Value.Time().UTC().Format(timeLayout))
	case slog.MessageKey:
		a.Key = "message"
	}
	return a
}

// level is AWS_LAMBDA_LOG_LEVEL as a slog level; unset, everything is
// written (the application log level is a JSON-format setting).
func level(s string) slog.Level {
	switch strings.ToUpper(s) {
	case "INFO":
		return slog.LevelInfo
	case "WARN":
		return slog.LevelWarn
	case "ERROR", "FATAL":
		return slog.LevelError
	}
	return slog.LevelDebug
}
