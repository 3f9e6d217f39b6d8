package sandbox

import (
	"io"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/runtimes"
)

// Mode is the kind of execution environment.
type Mode int

func (m Mode) initializationType() string {
	switch m {
	case ModeManagedInstances:
		return "lambda-managed-instances"
	case ModeSnapStart:
		return "snap-start"
	default:
		return "on-demand"
	}
}

const (
	// ModeOnDemand is a default Lambda function: INVOKE events, runtimeDone,
	// a freeze between invocations.
	ModeOnDemand Mode = iota
	// ModeManagedInstances is Lambda Managed Instances: extensions register
	// for SHUTDOWN only, no runtimeDone, no freeze, concurrent invocations,
	// telemetry schema 2025-01-29 (docs/lambda-runtime-contract.md#managed-instances).
	ModeManagedInstances
	// ModeSnapStart initialises, then freezes as a snapshot until Restore.
	ModeSnapStart
)

// Config describes the environment to emulate. Zero values take defaults.
type Config struct {
	// ExtensionsDir holds the extension executables (like /opt/extensions).
	ExtensionsDir string
	// FunctionName, MemoryMB and Region describe the function (fn, 128, us-east-1).
	FunctionName string
	MemoryMB     int
	Region       string
	// Alias is the qualifier every INVOKE's invokedFunctionArn ends with, as
	// when the function is invoked through an alias ("": unqualified).
	Alias string
	// FunctionTimeout sets each INVOKE's deadline (default 3 s).
	FunctionTimeout time.Duration
	// InitTimeout bounds init (default 10 s); ShutdownTimeout is SHUTDOWN's
	// deadline (default 2 s, as with external extensions).
	InitTimeout     time.Duration
	ShutdownTimeout time.Duration
	// Runtime, if set, is a real runtime process that runs as the function
	// instead of the script: it is exec'd at init with Lambda's environment
	// and served the Runtime API; Invoke hands it Function.Payload and
	// ends when it answers (docs/lambda-runtime-contract.md#runtime-api).
	// Its output becomes function records. RuntimeInit and InitLines are
	// then unused, and so are Function's scripted fields.
	Runtime *runtimes.Function
	// LogLevel is the function's application log level with the JSON
	// format (AWS_LAMBDA_LOG_LEVEL for the runtime): TRACE, DEBUG, INFO,
	// WARN, ERROR or FATAL; unset by default.
	LogLevel string
	// RuntimeInit is how long the scripted runtime takes to initialise.
	RuntimeInit time.Duration
	// InitLines are log lines the function writes while its runtime
	// initialises, before any invocation (module-level code does this). They
	// carry no request ID; InitLines() returns them as written.
	InitLines []string
	// CaptureLag is how much later than the runtime's own clock Lambda stamps
	// a function event's time. A JSON-format record keeps the runtime's
	// timestamp, so a lag tells the two apart
	// (docs/lambda-runtime-contract.md#text-and-json-records). With
	// Config.Runtime it delays the lines of its stdout and stderr; the
	// frames of its telemetry log fd carry their own time.
	CaptureLag time.Duration
	// LogFormat is "text" (default) or "json".
	LogFormat string
	// ActiveTracing gives every invocation an X-Ray trace header, in its
	// INVOKE event and its platform.start, as Lambda does for a function
	// with active tracing; without it neither carries one.
	ActiveTracing bool
	// Mode is the kind of environment.
	Mode Mode
	// Env is added to the extensions' environment (KEY=value), and to the
	// runtime process's: they are the function's variables, which Lambda
	// gives both.
	Env []string
	// ExtensionOutput receives the extensions' stdout and stderr. May be nil.
	ExtensionOutput io.Writer
	// TelemetryNotSupported makes the Telemetry API answer every subscription
	// with 202 Telemetry.NotSupported and deliver nothing, as AWS's runtime
	// interface emulator and SAM do.
	TelemetryNotSupported bool
	// TelemetryBufferBytes bounds each subscriber's undelivered events; past
	// it events are dropped and platform.logsDropped follows (default 8 MiB).
	TelemetryBufferBytes int
	// DropEvent, if set, makes the Telemetry API drop every event of a type
	// it returns true for, as an overflowing buffer would: the event is
	// counted and platform.logsDropped reports it at once
	// (docs/lambda-runtime-contract.md#delivery). Tests use
	// it to lose a runtimeDone, which a real overflow can do too.
	DropEvent func(eventType string) bool
	// BeforeFreeze, if set, is called after every extension has called /next
	// at the end of an invocation and before the sandbox freezes.
	BeforeFreeze func(requestID string)
	// NextFailures, if set, is asked about every /next call an extension
	// makes. call numbers the calls of the extension of that name from 1
	// (its init's first /next) over the sandbox's whole life: a
	// re-initialised extension's calls go on counting. A non-zero answer
	// is the HTTP status the Extensions API fails that call with, in
	// RAPID's error shape (500: InternalServerError, what Lambda answers
	// once the sandbox is beyond saving); 0 serves the call. The
	// extension's state does not change: it is still expected back in
	// /next. It is called without the emulator's lock held.
	NextFailures func(extension string, call int) int
}

func (c *Config) defaults() {
	if c.FunctionName == "" {
		c.FunctionName = "fn"
	}
	if c.MemoryMB == 0 {
		c.MemoryMB = 128
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.FunctionTimeout == 0 {
		c.FunctionTimeout = 3 * time.Second
	}
	if c.InitTimeout == 0 {
		c.InitTimeout = 10 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 2 * time.Second
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
	}
	if c.TelemetryBufferBytes == 0 {
		c.TelemetryBufferBytes = 8 << 20
	}
}
