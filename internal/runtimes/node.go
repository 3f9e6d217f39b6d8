package runtimes

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/lambda-loki/grafana-loki-extension/internal/cacheonce"
)

// The TypeScript function, run by AWS's Node.js runtime interface client
// (the npm package aws-lambda-ric) as Lambda's Node.js runtime runs it.
const (
	tsName    = "telemetry-api-starter-ts"
	tsHandler = "index.handler"
	// ricBin is the runtime client's command (its package.json "bin")
	// below the build directory.
	ricBin = "node_modules/aws-lambda-ric/bin/index.mjs"
	// ricAddon is the native part of the runtime client (its Runtime API
	// calls go through libcurl and aws-lambda-cpp); its postinstall script
	// puts it here, so its absence means the install scripts did not run.
	ricAddon = "node_modules/aws-lambda-ric/dist/rapid-client.node"
)

// nativeTools are what aws-lambda-ric's install scripts build curl and
// aws-lambda-cpp with, and node-gyp its addon (python3 runs gyp).
var nativeTools = []string{"cmake", "autoconf", "automake", "libtoolize", "make", "g++", "python3"}

const nativeHint = "aws-lambda-ric builds a native part at npm install: apt-get install -y cmake autoconf automake libtool make g++ python3"

// TypeScript builds the TypeScript function once (npm ci, which compiles
// aws-lambda-ric's native part, then tsc) into the cache and returns it: its
// Command is node running the runtime client's bin with the handler, its
// Dir the compiled code (dist/, where index.js is). Progress goes to progress: the first build
// takes minutes. A missing tool is a *MissingError.
func TypeScript(ctx context.Context, progress io.Writer) (Function, error) {
	var node string
	for _, tool := range []string{"npm", "node"} {
		path, err := exec.LookPath(tool)
		if err != nil {
			return Function{}, &MissingError{Tool: tool, Hint: "install Node.js 20 with npm (e.g. apt-get install -y nodejs npm, or from https://nodejs.org)"}
		}
		node = path
	}
	if abs, err := filepath.Abs(node); err == nil {
		node = abs
	}
	// The native addon is built for one Node.js ABI: a new node is a new build.
	version, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		return Function{}, fmt.Errorf("node --version: %w", err)
	}
	src, err := sourceDir("typescript")
	if err != nil {
		return Function{}, err
	}
	// Two cache entries: the dependencies (minutes to build) depend on the
	// lock file and Node.js only, so a change to the handler compiles again
	// in seconds without rebuilding them.
	deps, err := stage(ctx, stageSpec{
		name:     "typescript-deps",
		src:      src,
		files:    []string{"package.json", "package-lock.json"},
		key:      "node " + strings.TrimSpace(string(version)),
		progress: progress,
		build:    func(ctx context.Context, dir string) error { return installDeps(ctx, dir, progress) },
	})
	if err != nil {
		return Function{}, err
	}
	dir, err := stage(ctx, stageSpec{
		name:     "typescript",
		src:      src,
		files:    []string{"package.json", "package-lock.json", "tsconfig.json", "src"},
		key:      deps,
		progress: progress,
		build: func(ctx context.Context, dir string) error {
			if err := os.Symlink(filepath.Join(deps, "node_modules"), filepath.Join(dir, "node_modules")); err != nil {
				return fmt.Errorf("linking the TypeScript function's dependencies: %w", err)
			}
			return runLogged(ctx, dir, nil, filepath.Join(dir, "node_modules", ".bin", "tsc"), "-p", ".")
		},
	})
	if err != nil {
		return Function{}, err
	}
	return Function{
		Name:    tsName,
		Runtime: "nodejs",
		// node itself rather than the bin's "#!/usr/bin/env node": the
		// emulator gives the runtime Lambda's PATH, which may not find it.
		Command: []string{node, filepath.Join(dir, ricBin), tsHandler},
		Dir:     filepath.Join(dir, "dist"),
		Handler: tsHandler,
	}, nil
}

// installDeps runs npm ci in dir, which compiles aws-lambda-ric's native part.
func installDeps(ctx context.Context, dir string, progress io.Writer) error {
	for _, tool := range nativeTools {
		if _, err := exec.LookPath(tool); err != nil {
			return &MissingError{Tool: tool, Hint: nativeHint}
		}
	}
	start := time.Now()
	fmt.Fprintf(progress, "installing the TypeScript function's dependencies in %s: npm ci compiles aws-lambda-ric's native part (10 to 20 minutes on 2 busy cores, once per package-lock.json and Node.js version)\n", dir)
	defer cacheonce.Heartbeat(progress, "installing the TypeScript function's dependencies")()
	if err := runLogged(ctx, dir, npmEnv(), "npm", "ci", "--foreground-scripts", "--no-progress"); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, ricAddon)); err != nil {
		return fmt.Errorf("npm ci did not build aws-lambda-ric's native part (%s): were install scripts disabled (ignore-scripts)? package.json's allowScripts approves aws-lambda-ric's", ricAddon)
	}
	fmt.Fprintf(progress, "installed the TypeScript function's dependencies in %s\n", time.Since(start).Round(time.Second))
	return nil
}

// npmEnv makes npm ci quiet and strict: an install script that package.json
// does not approve fails the build rather than running or being skipped
// unnoticed. node-gyp needs Node.js's headers; where they came with the
// node binary (Debian's and NodeSource's packages put them in
// <prefix>/include/node) it uses those instead of downloading them.
func npmEnv() []string {
	env := []string{"npm_config_strict_allow_scripts=true", "npm_config_audit=false", "npm_config_fund=false", "npm_config_update_notifier=false"}
	if os.Getenv("npm_config_nodedir") != "" {
		return env
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return env
	}
	if real, err := filepath.EvalSymlinks(node); err == nil {
		node = real
	}
	prefix := filepath.Dir(filepath.Dir(node))
	if _, err := os.Stat(filepath.Join(prefix, "include", "node", "node.h")); err == nil {
		env = append(env, "npm_config_nodedir="+prefix)
	}
	return env
}

// runLogged runs a build command in dir, its output kept in dir/build.log;
// a failure quotes the output's last lines.
func runLogged(ctx context.Context, dir string, env []string, name string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	// npm's scripts run make and compilers: stop them all with the build.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if f, ferr := os.OpenFile(filepath.Join(dir, "build.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); ferr == nil {
		fmt.Fprintf(f, "$ %s %s\n%s", name, strings.Join(args, " "), out.Bytes())
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, tail(out.String(), 30))
	}
	return nil
}
