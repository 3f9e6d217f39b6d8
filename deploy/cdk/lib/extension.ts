import { Stack } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import { LokiLayers } from './layer';
import { LokiSettings, settingsEnvironment } from './settings';

/** A Secrets Manager secret, or one key of a secret that holds a JSON object. */
export type SecretSource = secretsmanager.ISecret | { readonly secret: secretsmanager.ISecret; readonly key: string };

/** The settings the extension can take from AWS instead of plain variables. */
export interface CredentialSources<T> {
  /** LOKI_URL_SECRET_ARN / LOKI_URL_SSM_NAME. */
  readonly url?: T;
  /** LOKI_USERNAME_SECRET_ARN / LOKI_USERNAME_SSM_NAME. */
  readonly username?: T;
  /** LOKI_PASSWORD_SECRET_ARN / LOKI_PASSWORD_SSM_NAME. */
  readonly password?: T;
  /** LOKI_BEARER_TOKEN_SECRET_ARN / LOKI_BEARER_TOKEN_SSM_NAME. */
  readonly bearerToken?: T;
}

const CREDENTIAL_VARIABLES: Record<keyof CredentialSources<unknown>, string> = {
  url: 'LOKI_URL',
  username: 'LOKI_USERNAME',
  password: 'LOKI_PASSWORD',
  bearerToken: 'LOKI_BEARER_TOKEN',
};

/**
 * Props of LokiExtension. A password or token is taken only from Secrets
 * Manager or Parameter Store: a plain one would be written into the
 * CloudFormation template and the function's configuration.
 */
export interface LokiExtensionProps extends LokiSettings {
  /** The function to ship the logs of. */
  readonly function: lambda.Function;
  /**
   * Where the layer comes from: the stack's LokiLayers (from the zips of
   * `go tool task build`) by default, or another LokiLayers.
   */
  readonly layers?: LokiLayers;
  /**
   * A layer version already published (go tool task release, or another
   * account's shared layer), for the function's architecture, instead of
   * layers.
   */
  readonly layerVersionArn?: string;
  /** Settings taken from Secrets Manager; the function may read these secrets only. */
  readonly secrets?: CredentialSources<SecretSource>;
  /** Settings taken from SSM Parameter Store; the function may read these parameters only. */
  readonly parameters?: CredentialSources<ssm.IParameter>;
  /** Further environment variables, for settings without a typed option. */
  readonly environment?: Record<string, string>;
}

/**
 * LokiExtension attaches the Grafana Loki extension to a function: the layer
 * of the function's own architecture, the settings as environment
 * variables, and read access to the secrets and parameters it is given,
 * nothing more.
 *
 *     new LokiExtension(this, 'Loki', { function: fn, lokiUrl, username, secrets: { password: secret } });
 */
export class LokiExtension extends Construct {
  /** The layer version the function got. */
  readonly layer: lambda.ILayerVersion;
  /** The environment variables the function got. */
  readonly environment: Record<string, string>;

  constructor(scope: Construct, id: string, props: LokiExtensionProps) {
    super(scope, id);
    const fn = props.function;
    if (fn.runtime.name === lambda.Runtime.FROM_IMAGE.name) {
      throw new Error(
        `${fn.node.path}: a container image function takes no layers; copy the extension into the image instead ` +
          '(COPY grafana-loki-extension /opt/extensions/grafana-loki-extension, see README.md "Container images")',
      );
    }
    if (props.layers && props.layerVersionArn) {
      throw new Error(`${this.node.path}: give layers or layerVersionArn, not both`);
    }
    this.layer = props.layerVersionArn
      ? lambda.LayerVersion.fromLayerVersionArn(this, 'Layer', props.layerVersionArn)
      : (props.layers ?? LokiLayers.of(Stack.of(fn))).forArchitecture(fn.architecture);
    fn.addLayers(this.layer);

    this.environment = {
      ...settingsEnvironment(props),
      ...credentialsEnvironment(fn, props),
      ...props.environment,
    };
    for (const [k, v] of Object.entries(this.environment)) {
      fn.addEnvironment(k, v);
    }
  }
}

/** The _SECRET_ARN and _SSM_NAME variables, granting the function read access to each source. */
function credentialsEnvironment(fn: lambda.Function, props: LokiExtensionProps): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [setting, variable] of Object.entries(CREDENTIAL_VARIABLES)) {
    const name = setting as keyof CredentialSources<unknown>;
    const secret = props.secrets?.[name];
    if (secret) {
      const s = 'secretArn' in secret ? { secret, key: undefined } : secret;
      s.secret.grantRead(fn);
      env[`${variable}_SECRET_ARN`] = s.key ? `${s.secret.secretArn}#${s.key}` : s.secret.secretArn;
    }
    const parameter = props.parameters?.[name];
    if (parameter) {
      parameter.grantRead(fn);
      env[`${variable}_SSM_NAME`] = parameter.parameterArn;
    }
  }
  return env;
}
