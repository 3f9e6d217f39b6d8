import * as path from 'node:path';
import { CfnOutput, Duration, RemovalPolicy, Stack, StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { LokiExtension } from './extension';
import { goCode, pythonCode, typescriptCode } from './functions';
import { defaultDistDir, LokiLayers } from './layer';
import { roleWithoutLogs } from './role';
import { LokiSettings } from './settings';

/** The VPC the functions run in. */
export interface StarterVpc {
  /** The VPC's ID (vpc-…). */
  readonly vpcId: string;
  /** The subnets the functions get their network interfaces in: private ones, with a route to Loki. */
  readonly subnetIds: string[];
}

/** Each test function's architecture. */
export interface StarterArchitectures {
  readonly go?: lambda.Architecture;
  readonly typescript?: lambda.Architecture;
  readonly python?: lambda.Architecture;
}

/** Props of TelemetryApiStarterStack. */
export interface TelemetryApiStarterStackProps extends StackProps {
  /** Loki's push URL and the other plain settings, for all three functions. */
  readonly settings: LokiSettings;
  /**
   * The secret holding Loki's password (Grafana Cloud: the access policy
   * token): its full ARN, as create-secret prints it, or its name. Default:
   * the stack creates one, to be filled with put-secret-value.
   */
  readonly passwordSecret?: string;
  /** Run the functions in this VPC; with no NAT gateway, set settings.httpsProxy. */
  readonly vpc?: StarterVpc;
  /**
   * Whether the functions may write to CloudWatch Logs. false gives them a
   * role without logs:*, so that their logs go to Loki only. Default: true.
   */
  readonly cloudWatchLogs?: boolean;
  /** Default: go arm64, typescript x86_64, python arm64: both layers in use. */
  readonly architectures?: StarterArchitectures;
  /** Where the layer zips are. Default: the repository's dist/. */
  readonly distDir?: string;
  /** Where the test functions' sources are. Default: the repository's functions/. */
  readonly functionsDir?: string;
  /** The layers' name, before -x86_64 / -arm64. */
  readonly layerName?: string;
}

/** The test functions: their names, runtimes, handlers and code. */
const FUNCTIONS = [
  { name: 'telemetry-api-starter-go', lang: 'go', runtime: lambda.Runtime.PROVIDED_AL2023, handler: 'bootstrap' },
  { name: 'telemetry-api-starter-ts', lang: 'typescript', runtime: lambda.Runtime.NODEJS_24_X, handler: 'index.handler' },
  { name: 'telemetry-api-starter-py', lang: 'python', runtime: lambda.Runtime.PYTHON_3_14, handler: 'handler.handler' },
] as const;

const DEFAULT_ARCHITECTURES: Required<StarterArchitectures> = {
  go: lambda.Architecture.ARM_64,
  typescript: lambda.Architecture.X86_64,
  python: lambda.Architecture.ARM_64,
};

/**
 * TelemetryApiStarterStack is the article's lambda_telementry_api stack:
 * the extension's layer for both architectures and the three test functions
 * (Go, TypeScript, Python) shipping their logs to Loki through it, each with
 * the layer of its own architecture and read access to the password's
 * secret only.
 */
export class TelemetryApiStarterStack extends Stack {
  /** The layers, one per architecture. */
  readonly layers: LokiLayers;
  /** The secret the functions read the password from. */
  readonly passwordSecret: secretsmanager.ISecret;
  /** The test functions, by name. */
  readonly functions: Record<string, lambda.Function> = {};

  constructor(scope: Construct, id: string, props: TelemetryApiStarterStackProps) {
    super(scope, id, props);
    const architectures = { ...DEFAULT_ARCHITECTURES, ...props.architectures };
    this.layers = new LokiLayers(this, 'Layers', {
      distDir: props.distDir,
      layerName: props.layerName,
      architectures: [lambda.Architecture.X86_64, lambda.Architecture.ARM_64],
    });
    this.passwordSecret = props.passwordSecret
      ? importSecret(this, 'LokiPassword', props.passwordSecret)
      : new secretsmanager.Secret(this, 'LokiPassword', {
          description: "Loki's password (Grafana Cloud: an access policy token with logs:write) for the telemetry-api-starter functions",
        });
    const vpc = props.vpc && importVpc(this, props.vpc);
    const functionsDir = props.functionsDir ?? path.resolve(defaultDistDir(), '..', 'functions');
    const cloudWatchLogs = props.cloudWatchLogs ?? true;

    for (const f of FUNCTIONS) {
      const architecture = architectures[f.lang];
      const code =
        f.lang === 'go' ? goCode(functionsDir, architecture) : f.lang === 'typescript' ? typescriptCode(functionsDir) : pythonCode(functionsDir);
      const fn = new lambda.Function(this, f.name, {
        functionName: f.name,
        description: `Test function of the Grafana Loki extension (${f.lang})`,
        runtime: f.runtime,
        handler: f.handler,
        architecture,
        code,
        memorySize: 256,
        timeout: Duration.seconds(10),
        ...vpc,
        role: cloudWatchLogs ? undefined : roleWithoutLogs(this, `${f.name}-role`, { vpc: vpc !== undefined }),
        logGroup: cloudWatchLogs
          ? new logs.LogGroup(this, `${f.name}-logs`, {
              logGroupName: `/aws/lambda/${f.name}`,
              retention: logs.RetentionDays.ONE_WEEK,
              removalPolicy: RemovalPolicy.DESTROY,
            })
          : undefined,
      });
      new LokiExtension(this, `${f.name}-loki`, {
        ...props.settings,
        function: fn,
        layers: this.layers,
        secrets: { password: this.passwordSecret },
      });
      this.functions[f.name] = fn;
      new CfnOutput(this, `${f.lang}Function`, { value: fn.functionName });
    }
    new CfnOutput(this, 'PasswordSecretArn', { value: this.passwordSecret.secretArn });
    for (const a of [lambda.Architecture.X86_64, lambda.Architecture.ARM_64]) {
      new CfnOutput(this, `Layer${a.name.replace('_', '')}`, { value: this.layers.forArchitecture(a).layerVersionArn });
    }
  }
}

/**
 * importSecret takes a secret by full ARN (the six characters Secrets
 * Manager appends included), ARN without them, or name; a grant then covers
 * that secret only.
 */
export function importSecret(scope: Construct, id: string, ref: string): secretsmanager.ISecret {
  if (!ref.startsWith('arn:')) {
    return secretsmanager.Secret.fromSecretNameV2(scope, id, ref);
  }
  const name = ref.split(':secret:')[1] ?? '';
  return /-[A-Za-z0-9]{6}$/.test(name)
    ? secretsmanager.Secret.fromSecretCompleteArn(scope, id, ref)
    : secretsmanager.Secret.fromSecretPartialArn(scope, id, ref);
}

/** The VPC and subnets by ID, without a lookup: synthesis stays offline. */
function importVpc(scope: Construct, v: StarterVpc): Pick<lambda.FunctionProps, 'vpc' | 'vpcSubnets'> {
  if (v.subnetIds.length === 0) {
    throw new Error('vpcId needs subnetIds: the private subnets the functions run in');
  }
  // The functions name their subnets, so the VPC's own subnet and zone lists
  // are never read; CDK wants at least one zone all the same.
  const vpc = ec2.Vpc.fromVpcAttributes(scope, 'Vpc', { vpcId: v.vpcId, availabilityZones: ['unused'] });
  const subnets = v.subnetIds.map((id, i) => ec2.Subnet.fromSubnetId(scope, `Subnet${i}`, id));
  return { vpc, vpcSubnets: { subnets } };
}
