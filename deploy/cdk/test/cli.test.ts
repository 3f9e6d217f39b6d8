import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { CfnTemplate, FIXTURE_DIST, FIXTURE_FUNCTIONS, resources, SECRET_ARN } from './helpers';

const APP_DIR = path.resolve(__dirname, '..', '..');

/** ELF e_machine of each Lambda architecture. */
const ELF_MACHINE: Record<string, number> = { x86_64: 0x3e, arm64: 0xb7 };

/**
 * The CDK CLI offline, as a user runs `npx cdk synth`: cdk.json's app, its
 * bundling on, CDK's CloudFormation validation on (the Go fixture is built with the host's Go), with
 * the notices, the version check and the telemetry off.
 */
function cdkSynth(out: string, functionsDir: string, context: Record<string, string>): string {
  // npm test compiled the app already: no second tsc run (cdk.json's build).
  const args = ['synth', '--quiet', '--no-notices', '--build', 'node -e 0', '--output', out, '-c', `distDir=${FIXTURE_DIST}`, '-c', `functionsDir=${functionsDir}`];
  for (const [k, v] of Object.entries(context)) {
    args.push('-c', `${k}=${v}`);
  }
  const res = spawnSync(process.execPath, [path.join(APP_DIR, 'node_modules', 'aws-cdk', 'bin', 'cdk'), ...args], {
    cwd: APP_DIR,
    encoding: 'utf8',
    timeout: 300_000,
    env: {
      ...process.env,
      CDK_DISABLE_VERSION_CHECK: '1',
      CDK_DISABLE_CLI_TELEMETRY: 'true',
      AWS_EC2_METADATA_DISABLED: 'true',
    },
  });
  assert.equal(res.status, 0, `cdk synth failed (${res.error ?? res.signal ?? res.status}):\n${res.stdout}\n${res.stderr}`);
  return res.stderr;
}

describe('npx cdk synth', () => {
  it('writes the template with both layers and the three functions, their code built for their architectures', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'loki-cdk-'));
    try {
      // Bundling writes into the functions' folders (npm ci): use a copy.
      const functionsDir = path.join(tmp, 'functions');
      fs.cpSync(FIXTURE_FUNCTIONS, functionsDir, { recursive: true });
      const out = path.join(tmp, 'cdk.out');
      cdkSynth(out, functionsDir, { lokiPasswordSecret: SECRET_ARN });

      const template: CfnTemplate = JSON.parse(fs.readFileSync(path.join(out, 'TelemetryApiStarter.template.json'), 'utf8'));
      const layers = resources(template, 'AWS::Lambda::LayerVersion');
      assert.deepEqual(Object.values(layers).map((l) => l.Properties.CompatibleArchitectures[0]).sort(), ['arm64', 'x86_64']);
      const fns = Object.values(resources(template, 'AWS::Lambda::Function'));
      assert.deepEqual(fns.map((f) => f.Properties.FunctionName).sort(), [
        'telemetry-api-starter-go', 'telemetry-api-starter-py', 'telemetry-api-starter-ts',
      ]);
      for (const f of fns) {
        const arch = f.Properties.Architectures[0];
        assert.equal(layers[f.Properties.Layers[0].Ref].Properties.CompatibleArchitectures[0], arch);
        const code = path.join(out, f.Metadata!['aws:asset:path']);
        switch (f.Properties.FunctionName) {
          case 'telemetry-api-starter-go': {
            const elf = fs.readFileSync(path.join(code, 'bootstrap'));
            assert.equal(elf.subarray(0, 4).toString('latin1'), '\x7fELF', 'bootstrap is an ELF binary');
            assert.equal(elf.readUInt16LE(18), ELF_MACHINE[arch], `bootstrap is built for ${arch}`);
            assert.ok(fs.statSync(path.join(code, 'bootstrap')).mode & 0o100, 'bootstrap is executable');
            break;
          }
          case 'telemetry-api-starter-ts':
            assert.deepEqual(fs.readdirSync(code).sort(), ['index.js', 'package.json']);
            assert.deepEqual(JSON.parse(fs.readFileSync(path.join(code, 'package.json'), 'utf8')), { type: 'module' });
            break;
          case 'telemetry-api-starter-py':
            assert.deepEqual(fs.readdirSync(code), ['handler.py'], "the emulator's bootstrap.py is left out");
            break;
        }
      }
      assert.ok(!fs.readFileSync(path.join(out, 'TelemetryApiStarter.template.json'), 'utf8').includes('AWS::CDK::Metadata'));
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
