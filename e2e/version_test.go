package e2e

import (
	"strings"
	"testing"

	"github.com/lambda-loki/grafana-loki-extension/internal/e2etest"
	"github.com/lambda-loki/grafana-loki-extension/sandbox"
)

// The extension's first log line, at the default level, says which version
// runs: in CloudWatch (or Loki, with SHIP_EXTENSION_LOGS) a deployment's
// layer version is told from its first line. A test build is version dev.
func TestFirstLogLineShowsTheVersion(t *testing.T) {
	// The init is done when Start returns: the extension registered and
	// called /next.
	sb := e2etest.StartSandbox(t, sandbox.Config{
		FunctionName: e2etest.FunctionName(t),
		Env:          e2etest.Env(t, "http://127.0.0.1:9/loki/api/v1/push"),
	})
	first, _, _ := strings.Cut(sb.ExtensionOutput(), "\n")
	for _, want := range []string{"level=info", "msg=registered", "version=dev", "name=" + e2etest.ExtensionName} {
		if !strings.Contains(first, want) {
			t.Errorf("first log line %q lacks %q", first, want)
		}
	}
}
