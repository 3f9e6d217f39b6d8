import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import {
  actions, CfnResource, FIXTURE_DIST, LOKI_URL, resources, roleOf, roleStatements, SECRET_ARN, synthStarter,
} from './helpers';

const NAMES = ['telemetry-api-starter-go', 'telemetry-api-starter-ts', 'telemetry-api-starter-py'];

function functionsByName(json: ReturnType<typeof synthStarter>['json']): Record<string, CfnResource> {
  return Object.fromEntries(Object.values(resources(json, 'AWS::Lambda::Function')).map((f) => [f.Properties.FunctionName, f]));
}

describe('the starter stack', () => {
  it('publishes one layer version per architecture, each from its own zip', () => {
    const { json, assemblyDir } = synthStarter({ lokiPasswordSecret: SECRET_ARN });
    const layers = Object.values(resources(json, 'AWS::Lambda::LayerVersion'));
    assert.equal(layers.length, 2);
    const byArch = Object.fromEntries(layers.map((l) => [l.Properties.CompatibleArchitectures.join(','), l]));
    assert.deepEqual(Object.keys(byArch).sort(), ['arm64', 'x86_64']);
    for (const [arch, zip] of [['x86_64', 'amd64'], ['arm64', 'arm64']]) {
      const l = byArch[arch];
      const staged = path.join(assemblyDir, l.Metadata!['aws:asset:path']);
      assert.ok(
        fs.readFileSync(staged).equals(fs.readFileSync(path.join(FIXTURE_DIST, `grafana-loki-extension-${zip}.zip`))),
        `the ${arch} layer is made from grafana-loki-extension-${zip}.zip`,
      );
      assert.equal(l.Properties.LayerName, `grafana-loki-extension-${arch}`);
      assert.ok(l.Properties.CompatibleRuntimes.includes('provided.al2023'));
      assert.ok(l.Properties.CompatibleRuntimes.length <= 15, 'Lambda allows at most 15 compatible runtimes');
      assert.match(l.Properties.Description, /v0\.0\.0-fixture/, 'the version the build wrote to dist/VERSION');
    }
  });

  it('deploys the three functions, each with the layer of its own architecture', () => {
    const { json } = synthStarter({ lokiPasswordSecret: SECRET_ARN });
    const fns = functionsByName(json);
    assert.deepEqual(Object.keys(fns).sort(), [...NAMES].sort());
    assert.equal(Object.keys(resources(json, 'AWS::Lambda::Function')).length, 3, 'no other function (no custom resources)');
    const want: Record<string, [string, string]> = {
      'telemetry-api-starter-go': ['provided.al2023', 'bootstrap'],
      'telemetry-api-starter-ts': ['nodejs24.x', 'index.handler'],
      'telemetry-api-starter-py': ['python3.14', 'handler.handler'],
    };
    const archs = new Set<string>();
    for (const name of NAMES) {
      const f = fns[name].Properties;
      assert.deepEqual([f.Runtime, f.Handler], want[name], name);
      assert.equal(f.Layers.length, 1, name);
      const layer = json.Resources[f.Layers[0].Ref];
      assert.equal(layer.Type, 'AWS::Lambda::LayerVersion', name);
      assert.deepEqual(layer.Properties.CompatibleArchitectures, f.Architectures, `${name}: the layer's architecture is the function's`);
      archs.add(f.Architectures[0]);
    }
    assert.deepEqual([...archs].sort(), ['arm64', 'x86_64'], 'both layers are in use by default');
  });

  for (const arch of ['x86_64', 'arm64']) {
    it(`matches the layer to the functions with architecture=${arch}`, () => {
      const { json } = synthStarter({ lokiPasswordSecret: SECRET_ARN, architecture: arch });
      for (const f of Object.values(functionsByName(json))) {
        assert.deepEqual(f.Properties.Architectures, [arch]);
        assert.deepEqual(json.Resources[f.Properties.Layers[0].Ref].Properties.CompatibleArchitectures, [arch]);
      }
    });
  }

  it('gives each function the settings and read access to exactly the given secret', () => {
    const { json } = synthStarter({ lokiPasswordSecret: SECRET_ARN, flushStrategy: 'adaptive' });
    for (const [name, f] of Object.entries(functionsByName(json))) {
      const env = f.Properties.Environment.Variables;
      assert.equal(env.LOKI_URL, LOKI_URL, name);
      assert.equal(env.LOKI_USERNAME, '123456', name);
      assert.equal(env.LOKI_PASSWORD_SECRET_ARN, SECRET_ARN, name);
      assert.equal(env.FLUSH_STRATEGY, 'adaptive', name);
      assert.equal(env.LOKI_PASSWORD, undefined, `${name}: no plain password`);
      const statements = roleStatements(json, roleOf(f));
      assert.ok(
        statements.some((s) => actions(s).includes('secretsmanager:GetSecretValue') && s.Resource === SECRET_ARN),
        `${name}: secretsmanager:GetSecretValue on ${SECRET_ARN}`,
      );
      for (const s of statements.filter((s) => actions(s).some((a) => a.startsWith('secretsmanager:')))) {
        assert.equal(s.Resource, SECRET_ARN, `${name}: Secrets Manager access to that secret only`);
      }
    }
    assert.equal(Object.keys(resources(json, 'AWS::SecretsManager::Secret')).length, 0, 'an existing secret: none created');
  });

  it('creates the secret when none is given, and grants reading that one', () => {
    const { json } = synthStarter();
    const secrets = Object.keys(resources(json, 'AWS::SecretsManager::Secret'));
    assert.equal(secrets.length, 1);
    const ref = { Ref: secrets[0] };
    for (const [name, f] of Object.entries(functionsByName(json))) {
      assert.deepEqual(f.Properties.Environment.Variables.LOKI_PASSWORD_SECRET_ARN, ref, name);
      const statements = roleStatements(json, roleOf(f)).filter((s) => actions(s).includes('secretsmanager:GetSecretValue'));
      assert.deepEqual(statements.map((s) => s.Resource), [ref], name);
    }
  });

  it('keeps CloudWatch Logs on by default, and leaves every logs:* permission out when off', () => {
    const on = JSON.stringify(synthStarter({ lokiPasswordSecret: SECRET_ARN }).json);
    assert.match(on, /AWSLambdaBasicExecutionRole/, 'on: the managed policy that grants logs:*');
    const { json } = synthStarter({ lokiPasswordSecret: SECRET_ARN, cloudWatchLogs: 'false' });
    const off = JSON.stringify(json);
    assert.doesNotMatch(off, /"logs:/);
    assert.doesNotMatch(off, /AWSLambda(Basic|VPCAccess)ExecutionRole/);
    assert.equal(Object.keys(resources(json, 'AWS::Logs::LogGroup')).length, 0);
    for (const f of Object.values(functionsByName(json))) {
      const role = json.Resources[roleOf(f)];
      assert.equal(role.Properties.ManagedPolicyArns, undefined);
    }
  });

  it('runs the functions in the VPC with the proxy, and without logs:* there too', () => {
    const { json } = synthStarter({
      lokiPasswordSecret: SECRET_ARN, vpcId: 'vpc-0123456789abcdef0', subnetIds: 'subnet-0aaaaaaaaaaaaaaaa, subnet-0bbbbbbbbbbbbbbbb',
      httpsProxy: 'http://proxy.internal:3128', noProxy: 'secretsmanager.eu-west-1.amazonaws.com', cloudWatchLogs: false,
    });
    assert.doesNotMatch(JSON.stringify(json), /"logs:/);
    for (const [name, f] of Object.entries(functionsByName(json))) {
      assert.deepEqual(f.Properties.VpcConfig.SubnetIds, ['subnet-0aaaaaaaaaaaaaaaa', 'subnet-0bbbbbbbbbbbbbbbb'], name);
      assert.equal(f.Properties.Environment.Variables.HTTPS_PROXY, 'http://proxy.internal:3128', name);
      assert.equal(f.Properties.Environment.Variables.NO_PROXY, 'secretsmanager.eu-west-1.amazonaws.com', name);
      const ec2 = roleStatements(json, roleOf(f)).flatMap(actions).filter((a) => a.startsWith('ec2:'));
      assert.ok(ec2.includes('ec2:CreateNetworkInterface') && ec2.includes('ec2:DeleteNetworkInterface'), `${name}: ${ec2}`);
    }
  });

  it('refuses a context it cannot use, naming the key', () => {
    assert.throws(() => synthStarter({ lokiUrl: '' }), /lokiUrl/);
    assert.throws(() => synthStarter({ architecture: 'amd64' }), /architecture/);
    assert.throws(() => synthStarter({ cloudWatchLogs: 'no' }), /cloudWatchLogs/);
    assert.throws(() => synthStarter({ vpcId: 'vpc-1' }), /subnetIds/);
    assert.throws(() => synthStarter({ distDir: '/nonexistent' }), /go tool task build/);
  });
});
