import { spawnSync, SpawnSyncOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DockerImage, ILocalBundling } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { goArch } from './layer';

// The test functions are built on the host at deploy time (CDK's local
// bundling), with the toolchains this repository needs anyway: Go for the
// extension, Node.js for the CDK itself. Bundling never falls back to
// Docker: a missing tool is one error saying so. Tests and `cdk synth`
// without bundling (the aws:cdk:bundling-stacks context empty) build
// nothing.

/** Docker is never used (tryBundle returns true or throws); CDK requires an image all the same. */
const NO_DOCKER = DockerImage.fromRegistry('local-bundling-only');

function run(cmd: string, args: string[], opts: SpawnSyncOptions): void {
  const res = spawnSync(cmd, args, { stdio: ['ignore', process.stderr, process.stderr], ...opts });
  if (res.error) {
    const missing = (res.error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new Error(missing ? `${cmd} not found: it is needed to build the test functions` : `${cmd}: ${res.error.message}`);
  }
  if (res.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} in ${opts.cwd} failed with exit status ${res.status}`);
  }
}

/** Builds functions/go as bootstrap for provided.al2023 with the host's Go. */
class GoBootstrap implements ILocalBundling {
  constructor(
    private readonly dir: string,
    private readonly architecture: lambda.Architecture,
  ) {}

  tryBundle(outputDir: string): boolean {
    run('go', ['build', '-trimpath', '-tags', 'lambda.norpc', '-ldflags', '-s -w', '-o', path.join(outputDir, 'bootstrap'), '.'], {
      cwd: this.dir,
      env: { ...process.env, GOOS: 'linux', GOARCH: goArch(this.architecture), CGO_ENABLED: '0' },
    });
    return true;
  }
}

/**
 * Builds functions/typescript with its own package.json (npm ci, then its
 * build script, or its own tsc without one) and takes dist/, where tsc
 * writes index.js. The package.json's
 * "type" goes along, so that Lambda's Node.js runtime loads the output as
 * what tsc wrote (ES module or CommonJS).
 */
class TscOutput implements ILocalBundling {
  constructor(private readonly dir: string) {}

  tryBundle(outputDir: string): boolean {
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const pkg = JSON.parse(fs.readFileSync(path.join(this.dir, 'package.json'), 'utf8'));
    run(npm, ['ci', '--no-audit', '--no-fund'], { cwd: this.dir });
    if (pkg.scripts?.build) {
      run(npm, ['run', 'build'], { cwd: this.dir });
    } else {
      run(npm, ['exec', '--no', '--', 'tsc', '-p', '.'], { cwd: this.dir });
    }
    fs.cpSync(path.join(this.dir, 'dist'), outputDir, { recursive: true });
    fs.writeFileSync(path.join(outputDir, 'package.json'), JSON.stringify({ type: pkg.type ?? 'commonjs' }) + '\n');
    return true;
  }
}

/** The code of telemetry-api-starter-go: functions/go built as bootstrap. */
export function goCode(functionsDir: string, architecture: lambda.Architecture): lambda.Code {
  const dir = path.join(functionsDir, 'go');
  return lambda.Code.fromAsset(dir, {
    exclude: ['bootstrap'],
    bundling: { image: NO_DOCKER, local: new GoBootstrap(dir, architecture) },
  });
}

/** The code of telemetry-api-starter-ts: functions/typescript compiled. */
export function typescriptCode(functionsDir: string): lambda.Code {
  const dir = path.join(functionsDir, 'typescript');
  return lambda.Code.fromAsset(dir, {
    exclude: ['node_modules', 'dist'],
    bundling: { image: NO_DOCKER, local: new TscOutput(dir) },
  });
}

/**
 * The code of telemetry-api-starter-py: handler.py as it is. On AWS Lambda's
 * own Python runtime runs it; bootstrap.py is the repository's stand-in for
 * that runtime in the emulator and is left out.
 */
export function pythonCode(functionsDir: string): lambda.Code {
  return lambda.Code.fromAsset(path.join(functionsDir, 'python'), {
    exclude: ['bootstrap.py', '__pycache__', '*.pyc', '*_test.py', 'test_*.py'],
  });
}
