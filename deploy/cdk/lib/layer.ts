import * as fs from 'node:fs';
import * as path from 'node:path';
import { RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Construct } from 'constructs';

/** The extension binary's name: the layer holds extensions/<name>. */
export const EXTENSION_NAME = 'grafana-loki-extension';

/**
 * The repository's dist/ folder, where `go tool task build` writes the layer
 * zips, seen from this file (build/lib/ or lib/ below deploy/cdk).
 */
export function defaultDistDir(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'cdk.json')) && path.dirname(dir) !== dir) {
    dir = path.dirname(dir);
  }
  return path.resolve(dir, '..', '..', 'dist');
}

/** Go's name for a Lambda architecture, as in the zips' names. */
export function goArch(architecture: lambda.Architecture): 'amd64' | 'arm64' {
  switch (architecture.name) {
    case lambda.Architecture.X86_64.name:
      return 'amd64';
    case lambda.Architecture.ARM_64.name:
      return 'arm64';
    default:
      throw new Error(`architecture ${architecture.name}: the extension is built for x86_64 and arm64 only`);
  }
}

/** The zip `go tool task build` writes for an architecture. */
export function layerZip(distDir: string, architecture: lambda.Architecture): string {
  return path.join(distDir, `${EXTENSION_NAME}-${goArch(architecture)}.zip`);
}

/**
 * Runtimes listed as the layer's compatible ones. The extension is a static
 * binary that runs beside any runtime; Lambda uses the list only to filter
 * layers in the console, and allows at most 15.
 */
export const COMPATIBLE_RUNTIMES = [
  lambda.Runtime.PROVIDED_AL2023,
  lambda.Runtime.PROVIDED_AL2,
  lambda.Runtime.NODEJS_20_X,
  lambda.Runtime.NODEJS_22_X,
  lambda.Runtime.NODEJS_24_X,
  lambda.Runtime.PYTHON_3_11,
  lambda.Runtime.PYTHON_3_12,
  lambda.Runtime.PYTHON_3_13,
  lambda.Runtime.PYTHON_3_14,
  lambda.Runtime.JAVA_17,
  lambda.Runtime.JAVA_21,
  lambda.Runtime.JAVA_25,
  lambda.Runtime.DOTNET_8,
  lambda.Runtime.RUBY_3_3,
  lambda.Runtime.RUBY_3_4,
];

/** Props of LokiLayers. */
export interface LokiLayersProps {
  /**
   * Where the zips of `go tool task build` are (grafana-loki-extension-amd64.zip
   * and -arm64.zip). Default: the repository's dist/.
   */
  readonly distDir?: string;
  /**
   * A zip per architecture, instead of distDir's: for the release zips
   * (grafana-loki-extension-v1.2.3-x86_64.zip) kept in your own repository.
   */
  readonly zips?: { readonly x86_64?: string; readonly arm64?: string };
  /** The layers' name, before -x86_64 / -arm64. Default: grafana-loki-extension. */
  readonly layerName?: string;
  /** The extension's version, for the layers' description. Default: dist/VERSION, if the build wrote it. */
  readonly version?: string;
  /** The architectures to publish now; others are published when a function asks for them. Default: none. */
  readonly architectures?: lambda.Architecture[];
  /** Whether a layer version stays when the stack is deleted or the layer replaced. Default: DESTROY. */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * LokiLayers publishes the extension's layer, one version per architecture,
 * from the zips `go tool task build` writes, and hands each function the
 * one of its own architecture: a layer whose binary is for the other
 * architecture fails only on AWS, at the function's init.
 */
export class LokiLayers extends Construct {
  /** The id of the instance LokiLayers.of keeps in a stack. */
  static readonly ID = 'GrafanaLokiExtensionLayers';

  /** The stack's LokiLayers, created with the props on first use. */
  static of(scope: Construct, props: LokiLayersProps = {}): LokiLayers {
    const stack = Stack.of(scope);
    const found = stack.node.tryFindChild(LokiLayers.ID);
    if (found instanceof LokiLayers) {
      return found;
    }
    return new LokiLayers(stack, LokiLayers.ID, props);
  }

  private readonly layers = new Map<string, lambda.LayerVersion>();
  private readonly distDir: string;

  constructor(scope: Construct, id: string, private readonly props: LokiLayersProps = {}) {
    super(scope, id);
    this.distDir = props.distDir ?? defaultDistDir();
    for (const a of props.architectures ?? []) {
      this.forArchitecture(a);
    }
  }

  /** The layer version for functions of this architecture, published on first use. */
  forArchitecture(architecture: lambda.Architecture): lambda.LayerVersion {
    const known = this.layers.get(architecture.name);
    if (known) {
      return known;
    }
    const given = this.props.zips?.[architecture.name as 'x86_64' | 'arm64'];
    const zip = given ?? layerZip(this.distDir, architecture);
    if (!fs.existsSync(zip)) {
      throw new Error(
        given
          ? `${zip} (the ${architecture.name} layer zip) is missing`
          : `${zip} is missing: run \`go tool task build\` in the repository first (it writes both layer zips)`,
      );
    }
    const version = this.props.version ?? readVersion(this.distDir);
    const layer = new lambda.LayerVersion(this, `Layer-${architecture.name}`, {
      layerVersionName: `${this.props.layerName ?? EXTENSION_NAME}-${architecture.name}`,
      description: `Grafana Loki extension${version ? ' ' + version : ''} (${architecture.name})`,
      code: lambda.Code.fromAsset(zip),
      compatibleArchitectures: [architecture],
      compatibleRuntimes: COMPATIBLE_RUNTIMES,
      license: 'MIT',
      removalPolicy: this.props.removalPolicy ?? RemovalPolicy.DESTROY,
    });
    this.layers.set(architecture.name, layer);
    return layer;
  }
}

/** The version `go tool task build` wrote to dist/VERSION, if it did. */
function readVersion(distDir: string): string | undefined {
  try {
    return fs.readFileSync(path.join(distDir, 'VERSION'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}
