import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { App, Duration, Stack } from 'aws-cdk-lib';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { FlushStrategy, LokiExtension, LokiLayers } from '../lib';
import { actions, FIXTURE_DIST, LOKI_URL, resources, roleOf, roleStatements, SECRET_ARN, synthesized, testApp } from './helpers';

/** A team's own stack with a function of each architecture, none of them knowing about Loki. */
function userStack() {
  const app = testApp();
  const stack = new Stack(app, 'TeamStack');
  const fn = (id: string, architecture: lambda.Architecture) =>
    new lambda.Function(stack, id, {
      runtime: lambda.Runtime.NODEJS_24_X,
      handler: 'index.handler',
      code: lambda.Code.fromInline('exports.handler = async () => ({})'),
      architecture,
      environment: { TEAM_SETTING: 'kept' },
    });
  return { app, stack, x86: fn('OrdersX86', lambda.Architecture.X86_64), arm: fn('OrdersArm', lambda.Architecture.ARM_64) };
}

describe('LokiExtension on a function a team already has', () => {
  it('gives each function the layer of its own architecture, and keeps its environment', () => {
    const { app, stack, x86, arm } = userStack();
    LokiLayers.of(stack, { distDir: FIXTURE_DIST }); // where the zips are; by default the repository's dist/
    const secret = secretsmanager.Secret.fromSecretCompleteArn(stack, 'LokiSecret', SECRET_ARN);
    // The two lines a team adds, per function:
    new LokiExtension(stack, 'LokiX86', { function: x86, lokiUrl: LOKI_URL, username: '123456', secrets: { password: secret } });
    new LokiExtension(stack, 'LokiArm', { function: arm, lokiUrl: LOKI_URL, username: '123456', secrets: { password: secret } });

    const { json } = synthesized(app, stack);
    const layers = resources(json, 'AWS::Lambda::LayerVersion');
    assert.equal(Object.keys(layers).length, 2);
    for (const [id, arch] of [[stack.getLogicalId(x86.node.defaultChild as lambda.CfnFunction), 'x86_64'], [stack.getLogicalId(arm.node.defaultChild as lambda.CfnFunction), 'arm64']]) {
      const f = json.Resources[id];
      assert.deepEqual(f.Properties.Architectures, [arch]);
      assert.equal(f.Properties.Layers.length, 1);
      assert.deepEqual(layers[f.Properties.Layers[0].Ref].Properties.CompatibleArchitectures, [arch], `${id}: its layer's architecture`);
      assert.deepEqual(f.Properties.Environment.Variables, {
        TEAM_SETTING: 'kept',
        LOKI_URL,
        LOKI_USERNAME: '123456',
        LOKI_PASSWORD_SECRET_ARN: SECRET_ARN,
      });
      const sm = roleStatements(json, roleOf(f)).filter((s) => actions(s).some((a) => a.startsWith('secretsmanager:')));
      assert.deepEqual(sm.map((s) => s.Resource), [SECRET_ARN], id);
      assert.ok(actions(sm[0]).includes('secretsmanager:GetSecretValue'));
    }
  });

  it('publishes only the layer the stack uses', () => {
    const { app, stack, arm } = userStack();
    stack.node.tryRemoveChild('OrdersX86');
    new LokiExtension(stack, 'Loki', { function: arm, lokiUrl: LOKI_URL, layers: new LokiLayers(stack, 'Layers', { distDir: FIXTURE_DIST }) });
    const layers = Object.values(resources(synthesized(app, stack).json, 'AWS::Lambda::LayerVersion'));
    assert.deepEqual(layers.map((l) => l.Properties.CompatibleArchitectures), [['arm64']]);
  });

  it('writes every typed setting as the variable the extension reads', () => {
    const { stack, x86 } = userStack();
    const token = ssm.StringParameter.fromSecureStringParameterAttributes(stack, 'Token', { parameterName: '/loki/token' });
    const url = secretsmanager.Secret.fromSecretCompleteArn(stack, 'Url', SECRET_ARN);
    const rules = [
      { type: 'exclude_at_match' as const, name: 'drop_health_checks', pattern: 'GET /health\\b' },
      { type: 'mask_sequences' as const, name: 'mask_emails', pattern: '[\\w.]+@[\\w.]+', replace_placeholder: '[EMAIL]' },
    ];
    const ext = new LokiExtension(stack, 'Loki', {
      function: x86,
      layers: new LokiLayers(stack, 'Layers', { distDir: FIXTURE_DIST }),
      secrets: { url: { secret: url, key: 'push_url' } },
      parameters: { bearerToken: token },
      tenantId: 'team-a',
      labels: { team: 'orders', env: 'prod' },
      minLevel: 'info',
      processingRules: rules,
      flushStrategy: FlushStrategy.periodic(Duration.millis(500)),
      flushTimeout: Duration.seconds(1),
      lokiTimeout: Duration.millis(1200),
      queueMaxEntries: 5000,
      shipPlatformLogs: true,
      structuredMetadata: false,
      logLevel: 'debug',
      strictConfig: true,
      httpsProxy: 'http://proxy:3128',
      environment: { TELEMETRY_LISTENER_PORT: '4324' },
    });
    const env = stack.resolve(ext.environment);
    assert.deepEqual(JSON.parse(env.LOKI_PROCESSING_RULES), rules);
    delete env.LOKI_PROCESSING_RULES;
    assert.equal(env.LOKI_BEARER_TOKEN_SSM_NAME['Fn::Join'] !== undefined, true, 'a parameter ARN, built by CloudFormation');
    delete env.LOKI_BEARER_TOKEN_SSM_NAME;
    assert.deepEqual(env, {
      LOKI_URL_SECRET_ARN: `${SECRET_ARN}#push_url`,
      LOKI_TENANT_ID: 'team-a',
      LOKI_LABELS: 'team=orders,env=prod',
      LOKI_MIN_LEVEL: 'info',
      FLUSH_STRATEGY: 'periodic,500',
      FLUSH_TIMEOUT_MS: '1000',
      LOKI_TIMEOUT_MS: '1200',
      QUEUE_MAX_ENTRIES: '5000',
      SHIP_PLATFORM_LOGS: 'true',
      LOKI_STRUCTURED_METADATA: 'false',
      LOG_LEVEL: 'debug',
      STRICT_CONFIG: 'true',
      HTTPS_PROXY: 'http://proxy:3128',
      TELEMETRY_LISTENER_PORT: '4324',
    });
    const json = synthesized(stack.node.root as App, stack).json;
    const granted = roleStatements(json, roleOf(json.Resources[stack.getLogicalId(x86.node.defaultChild as lambda.CfnFunction)]));
    const ssmStatement = granted.find((s) => actions(s).includes('ssm:GetParameter'));
    assert.ok(ssmStatement, 'ssm:GetParameter granted');
    assert.match(JSON.stringify(ssmStatement.Resource), /parameter\/loki\/token/);
  });

  it('takes the zips by path, as a release names them', () => {
    const { app, stack, x86, arm } = userStack();
    const layers = new LokiLayers(stack, 'Layers', {
      zips: { x86_64: `${FIXTURE_DIST}/grafana-loki-extension-amd64.zip`, arm64: `${FIXTURE_DIST}/grafana-loki-extension-arm64.zip` },
    });
    new LokiExtension(stack, 'LokiX86', { function: x86, lokiUrl: LOKI_URL, layers });
    new LokiExtension(stack, 'LokiArm', { function: arm, lokiUrl: LOKI_URL, layers });
    const { json } = synthesized(app, stack);
    for (const fn of [x86, arm]) {
      const f = json.Resources[stack.getLogicalId(fn.node.defaultChild as lambda.CfnFunction)];
      assert.deepEqual(json.Resources[f.Properties.Layers[0].Ref].Properties.CompatibleArchitectures, f.Properties.Architectures);
    }
    assert.throws(() => new LokiLayers(stack, 'Missing', { zips: { arm64: '/nonexistent.zip' } }).forArchitecture(lambda.Architecture.ARM_64), /arm64 layer zip/);
  });

  it('uses a published layer by ARN, creating none', () => {
    const { app, stack, arm } = userStack();
    const arn = 'arn:aws:lambda:eu-west-1:123456789012:layer:grafana-loki-extension-arm64:3';
    new LokiExtension(stack, 'Loki', { function: arm, lokiUrl: LOKI_URL, layerVersionArn: arn });
    const { json } = synthesized(app, stack);
    assert.equal(Object.keys(resources(json, 'AWS::Lambda::LayerVersion')).length, 0);
    assert.deepEqual(json.Resources[stack.getLogicalId(arm.node.defaultChild as lambda.CfnFunction)].Properties.Layers, [arn]);
  });

  it('refuses a container image function, saying what to do instead', () => {
    const { stack } = userStack();
    const image = new lambda.DockerImageFunction(stack, 'Image', {
      code: lambda.DockerImageCode.fromEcr(ecr.Repository.fromRepositoryName(stack, 'Repo', 'team/orders')),
    });
    assert.throws(() => new LokiExtension(stack, 'Loki', { function: image, lokiUrl: LOKI_URL }), /\/opt\/extensions/);
  });
});
