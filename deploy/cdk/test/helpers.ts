import * as path from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { starterProps } from '../lib/context';
import { TelemetryApiStarterStack } from '../lib/starter-stack';

/** The source tree's test/fixtures (the tests run from build/test). */
export const FIXTURES = path.resolve(__dirname, '..', '..', 'test', 'fixtures');
export const FIXTURE_DIST = path.join(FIXTURES, 'dist');
export const FIXTURE_FUNCTIONS = path.join(FIXTURES, 'functions');

export const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:loki/grafana-cloud-AbCdEf';
export const LOKI_URL = 'https://logs-prod-012.grafana.net/loki/api/v1/push';

/**
 * Context for synthesis in tests: no bundling (nothing is built), asset
 * metadata on (each layer says which staged file it was made from), and the
 * fixtures instead of the repository's dist/ and functions/.
 */
export function testContext(context: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    'aws:cdk:bundling-stacks': [],
    'aws:cdk:enable-asset-metadata': true,
    distDir: FIXTURE_DIST,
    functionsDir: FIXTURE_FUNCTIONS,
    lokiUrl: LOKI_URL,
    lokiUsername: '123456',
    ...context,
  };
}

/** A synthesized starter stack: the app as bin/app.ts builds it, from context. */
export interface Synthesized {
  readonly template: Template;
  /** The template as JSON. */
  readonly json: CfnTemplate;
  /** The cloud assembly's directory, where the assets were staged. */
  readonly assemblyDir: string;
}

/** A CloudFormation template, as much of it as the tests read. */
export interface CfnTemplate {
  Resources: Record<string, CfnResource>;
}

/** One resource of a template. */
export interface CfnResource {
  Type: string;
  Properties: Record<string, any>;
  Metadata?: Record<string, any>;
}

/**
 * testApp is an app with the test context. CDK's built-in CloudFormation
 * validation is off here: it compiles a WebAssembly engine that takes
 * 10 to 20 s per process; the CLI test runs it on the same template.
 */
export function testApp(context: Record<string, unknown> = {}): App {
  return new App({ context: testContext(context), builtinCloudFormationValidation: false });
}

/** synthStarter synthesizes the starter stack from the test context plus context. */
export function synthStarter(context: Record<string, unknown> = {}): Synthesized {
  const app = testApp(context);
  const props = starterProps(app);
  const stack = new TelemetryApiStarterStack(app, props.stackName, props);
  return synthesized(app, stack);
}

/** synthesized synthesizes the app and reads the stack's template. */
export function synthesized(app: App, stack: Stack): Synthesized {
  const template = Template.fromStack(stack);
  return { template, json: template.toJSON() as CfnTemplate, assemblyDir: app.synth().directory };
}

/** The resources of a type, by logical ID. */
export function resources(t: CfnTemplate, type: string): Record<string, CfnResource> {
  return Object.fromEntries(Object.entries(t.Resources).filter(([, r]) => r.Type === type));
}

/** A statement of an IAM policy document. */
export interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
}

/** Every statement of the inline policies attached to a role, given by logical ID. */
export function roleStatements(t: CfnTemplate, roleId: string): Statement[] {
  const out: Statement[] = [];
  for (const p of Object.values(resources(t, 'AWS::IAM::Policy'))) {
    if ((p.Properties.Roles as unknown[]).some((r) => JSON.stringify(r) === JSON.stringify({ Ref: roleId }))) {
      out.push(...(p.Properties.PolicyDocument.Statement as Statement[]));
    }
  }
  const role = t.Resources[roleId];
  for (const p of (role?.Properties.Policies ?? []) as { PolicyDocument: { Statement: Statement[] } }[]) {
    out.push(...p.PolicyDocument.Statement);
  }
  return out;
}

/** A statement's actions as a list. */
export function actions(s: Statement): string[] {
  return Array.isArray(s.Action) ? s.Action : [s.Action];
}

/** The logical ID a function's Role refers to. */
export function roleOf(fn: CfnResource): string {
  return fn.Properties.Role['Fn::GetAtt'][0];
}
