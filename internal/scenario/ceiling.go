package scenario

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/lokiserver"
	"github.com/lambda-loki/grafana-loki-extension/loki"
)

// FloodLineBytes is the size of the flood's lines.
const FloodLineBytes = 512

// Ceiling measures what srv ingests with no extension in the way: pushers
// Loki clients at once push lines lines of lineBytes each (in requests of
// the client's default size, on one stream of function), each taking the
// next request's worth as it is done. It returns the lines' bytes per
// second, the ceiling the SHUTDOWN drain's throughput is judged against.
func Ceiling(ctx context.Context, srv *lokiserver.Server, function string, lines, lineBytes, pushers int) (float64, error) {
	c, err := loki.New(loki.Config{URL: srv.PushURL(), Labels: map[string]string{"source": "lambda", "function": function}})
	if err != nil {
		return 0, err
	}
	const perRequest = loki.DefaultMaxRequestBytes / (FloodLineBytes + 64)
	base := time.Now()
	pad := strings.Repeat("x", max(lineBytes-24, 0))
	var (
		next   atomic.Int64
		failed atomic.Value
		wg     sync.WaitGroup
	)
	start := time.Now()
	for range pushers {
		wg.Go(func() {
			for {
				from := int(next.Add(perRequest)) - perRequest
				if from >= lines || ctx.Err() != nil {
					return
				}
				to := min(from+perRequest, lines)
				entries := make([]loki.Entry, 0, to-from)
				for i := from; i < to; i++ {
					entries = append(entries, loki.Entry{Time: base.Add(time.Duration(i)), Line: "ceiling " + strconv.Itoa(i) + " " + pad, Stream: loki.StreamFunction})
				}
				if res := c.PushRetrying(ctx, entries, time.Time{}); res.Err != nil || len(res.Undelivered) > 0 {
					failed.Store(fmt.Errorf("pushing the ceiling's lines: %v", res.Err))
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		return 0, err
	}
	return float64(lines*lineBytes) / took.Seconds(), ctx.Err()
}
