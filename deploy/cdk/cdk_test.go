// Package cdk holds the CDK app (TypeScript, in this folder) that deploys the
// extension's layers and the test functions. This Go test runs the app's own
// tests (npm test: synthesis with aws-cdk-lib/assertions and one `cdk synth`
// through the CLI), so that `go test ./...` covers them. They need Node.js
// and npm, the npm registry (or npm's cache) for `npm ci`, and nothing else:
// no AWS credentials, no Docker, no network after the install.
package cdk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// offlineCDK turns off what the CDK CLI would fetch or send: notices, the
// check for a newer version, and its telemetry.
var offlineCDK = []string{
	"CDK_DISABLE_VERSION_CHECK=1",
	"CDK_DISABLE_CLI_TELEMETRY=true",
	"AWS_EC2_METADATA_DISABLED=true",
}

func TestCDKApp(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the CDK app's tests take a minute")
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("CI needs %s for the CDK app's tests: %v", tool, err)
			}
			t.Skipf("%s not found: the CDK app's tests in deploy/cdk need Node.js 20 or later with npm (https://nodejs.org)", tool)
		}
	}
	ctx := t.Context()
	if deadline, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-10*time.Second))
		defer cancel()
	}
	installed(t, ctx)
	npm(t, ctx, "test")
}

// installed runs `npm ci` unless node_modules was installed from this very
// package-lock.json: npm ci removes node_modules first, a minute's work.
func installed(t *testing.T, ctx context.Context) {
	lock, err := os.ReadFile("package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(lock)
	want := hex.EncodeToString(sum[:])
	stamp := filepath.Join("node_modules", ".installed-from-lock")
	if got, err := os.ReadFile(stamp); err == nil && string(got) == want {
		return
	}
	npm(t, ctx, "ci", "--no-audit", "--no-fund", "--prefer-offline")
	if err := os.WriteFile(stamp, []byte(want), 0o644); err != nil {
		t.Fatal(err)
	}
}

// npm runs npm in this folder, showing its output when it fails.
func npm(t *testing.T, ctx context.Context, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "npm", args...)
	cmd.Env = append(os.Environ(), offlineCDK...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	if err != nil {
		t.Fatalf("npm %v: %v after %s\n%s", args, err, time.Since(start).Round(time.Millisecond), out.String())
	}
	t.Logf("npm %v: ok in %s", args, time.Since(start).Round(time.Millisecond))
	if testing.Verbose() {
		t.Log(out.String())
	}
}
