import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { FlushStrategy } from './settings';
import { TelemetryApiStarterStackProps } from './starter-stack';

/**
 * The context keys the app reads (cdk.json, or -c key=value), each with the
 * prop it sets. Paths are relative to deploy/cdk.
 */
export const CONTEXT_KEYS = {
  region: 'the stack\'s region (default: the CLI\'s, AWS_REGION or the profile\'s)',
  account: 'the stack\'s account (default: the credentials\')',
  stackName: 'the stack\'s name (default: TelemetryApiStarter)',
  lokiUrl: 'LOKI_URL',
  lokiUsername: 'LOKI_USERNAME',
  lokiPasswordSecret: 'the secret of LOKI_PASSWORD_SECRET_ARN: full ARN or name (default: the stack creates one)',
  flushStrategy: 'FLUSH_STRATEGY: end, adaptive or periodic,<ms>',
  vpcId: 'run the functions in this VPC',
  subnetIds: 'its subnets, comma-separated',
  httpsProxy: 'HTTPS_PROXY, for a VPC without a NAT gateway',
  noProxy: 'NO_PROXY',
  cloudWatchLogs: 'false: the functions\' role has no logs:*, their logs go to Loki only',
  architecture: 'x86_64 or arm64 for all three functions (default: go and python arm64, typescript x86_64)',
  layerName: 'the layers\' name, before -x86_64/-arm64',
  distDir: 'where the layer zips are (default: ../../dist)',
  functionsDir: 'where the test functions are (default: ../../functions)',
} as const;

type Key = keyof typeof CONTEXT_KEYS;

/** starterProps reads the starter stack's props from the app's context. */
export function starterProps(app: App): TelemetryApiStarterStackProps & { stackName: string } {
  const get = (k: Key): string | undefined => {
    const v = app.node.tryGetContext(k);
    return v === undefined || v === null || v === '' ? undefined : String(v);
  };
  const lokiUrl = get('lokiUrl');
  if (!lokiUrl) {
    throw new Error('context lokiUrl is not set: put it in cdk.json or pass -c lokiUrl=https://…/loki/api/v1/push');
  }
  const cloudWatchLogs = get('cloudWatchLogs');
  if (cloudWatchLogs !== undefined && cloudWatchLogs !== 'true' && cloudWatchLogs !== 'false') {
    throw new Error(`context cloudWatchLogs: want true or false, got ${cloudWatchLogs}`);
  }
  const arch = get('architecture');
  const architecture = arch === undefined ? undefined : parseArchitecture(arch);
  const vpcId = get('vpcId');
  const subnetIds = (get('subnetIds') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const flush = get('flushStrategy');
  const resolve = (p: string | undefined) => (p === undefined ? undefined : path.resolve(p));
  return {
    stackName: get('stackName') ?? 'TelemetryApiStarter',
    env: { region: get('region') ?? process.env.CDK_DEFAULT_REGION, account: get('account') ?? process.env.CDK_DEFAULT_ACCOUNT },
    settings: {
      lokiUrl,
      username: get('lokiUsername'),
      flushStrategy: flush === undefined ? undefined : FlushStrategy.of(flush),
      httpsProxy: get('httpsProxy'),
      noProxy: get('noProxy'),
    },
    passwordSecret: get('lokiPasswordSecret'),
    vpc: vpcId ? { vpcId, subnetIds } : undefined,
    cloudWatchLogs: cloudWatchLogs === undefined ? undefined : cloudWatchLogs === 'true',
    architectures: architecture && { go: architecture, typescript: architecture, python: architecture },
    layerName: get('layerName'),
    distDir: resolve(get('distDir')),
    functionsDir: resolve(get('functionsDir')),
  };
}

function parseArchitecture(v: string): lambda.Architecture {
  switch (v) {
    case 'x86_64':
      return lambda.Architecture.X86_64;
    case 'arm64':
      return lambda.Architecture.ARM_64;
    default:
      throw new Error(`context architecture: want x86_64 or arm64, got ${v}`);
  }
}
