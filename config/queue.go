package config

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// readOnlyDirs are Lambda's directories that hold the function's code, its
// layers and the runtime, read-only, and the kernel's: a spill there could
// never be written.
var readOnlyDirs = []string{"/var/task", "/opt", "/var/runtime", "/var/lang", "/proc", "/sys", "/dev"}

// spillDir reads QUEUE_SPILL_DIR: an absolute path, not the root, not in
// a read-only directory of Lambda's. The spill works in a subdirectory of
// its own there and touches nothing else, so /tmp itself is fine.
func (r *reader) spillDir() string {
	const name = "QUEUE_SPILL_DIR"
	dir := r.str(name, os.TempDir())
	if !filepath.IsAbs(dir) {
		r.fail(name, "want an absolute path, got %q", dir)
		return dir
	}
	dir = filepath.Clean(dir)
	if dir == "/" {
		r.fail(name, "must not be the root directory: give a writable directory such as /tmp")
		return dir
	}
	for _, ro := range readOnlyDirs {
		if dir == ro || strings.HasPrefix(dir, ro+"/") {
			r.fail(name, "%q is in %s, which Lambda mounts read-only (or is the kernel's): give a writable directory such as /tmp", dir, ro)
			return dir
		}
	}
	return dir
}

// queueEntryBytes is the most a telemetry record counts in the queue
// beyond the bytes of its line: an Entry's overhead with a request ID, a
// trace ID and a level.
var queueEntryBytes = loki.Entry{
	RequestID: strings.Repeat("r", 36), TraceID: strings.Repeat("t", 32), Level: "warning",
}.Size()

// batchQueueBytes is the most one telemetry batch of b counts in the
// queue: no line is longer than its record's JSON, so the batch's bytes,
// plus each record's entry overhead.
func batchQueueBytes(b Buffering) int { return b.MaxBytes + b.MaxItems*queueEntryBytes }

// queueHoldsABatch refuses queue bounds smaller than one telemetry batch:
// the queue would drop a batch's lines on arrival, with Loki healthy.
func (r *reader) queueHoldsABatch(cfg *Config) {
	if cfg.QueueMaxEntries < cfg.Buffering.MaxItems {
		r.fail("QUEUE_MAX_ENTRIES", "must be at least TELEMETRY_MAX_ITEMS (%d), got %d: one telemetry batch must fit in the queue, or its lines are dropped as they arrive; raise QUEUE_MAX_ENTRIES or lower TELEMETRY_MAX_ITEMS",
			cfg.Buffering.MaxItems, cfg.QueueMaxEntries)
	}
	if need := batchQueueBytes(cfg.Buffering); cfg.QueueMaxBytes < need {
		r.fail("QUEUE_MAX_BYTES", "must be at least %d, got %d: one telemetry batch of TELEMETRY_MAX_BYTES=%d and TELEMETRY_MAX_ITEMS=%d counts up to that in the queue, which would drop its lines as they arrive; raise QUEUE_MAX_BYTES or lower TELEMETRY_MAX_BYTES",
			need, cfg.QueueMaxBytes, cfg.Buffering.MaxBytes, cfg.Buffering.MaxItems)
	}
}
