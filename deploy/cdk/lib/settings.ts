import { Duration } from 'aws-cdk-lib';

/**
 * When the extension pushes (FLUSH_STRATEGY). Every strategy drains at
 * SHUTDOWN, and a full request's worth is pushed as soon as it is queued.
 */
export class FlushStrategy {
  /** Push before /next at the end of every invocation (the default). */
  static end(): FlushStrategy {
    return new FlushStrategy('end');
  }

  /**
   * Like end, but while invocations arrive less than a second apart, call
   * /next at once and push in the background.
   */
  static adaptive(): FlushStrategy {
    return new FlushStrategy('adaptive');
  }

  /** Push in the background every interval (10 ms to 10 min) and call /next at once. */
  static periodic(interval: Duration): FlushStrategy {
    return new FlushStrategy(`periodic,${interval.toMilliseconds()}`);
  }

  /** The value as FLUSH_STRATEGY takes it, for a strategy read from configuration. */
  static of(value: string): FlushStrategy {
    return new FlushStrategy(value);
  }

  private constructor(
    /** The FLUSH_STRATEGY value. */
    readonly value: string,
  ) {}
}

/** A level name as LOKI_MIN_LEVEL and LOG_LEVEL take it. */
export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

/** One of LOKI_PROCESSING_RULES, in the shape of Datadog's processing rules. */
export interface ProcessingRule {
  /** What the rule does with a line its pattern matches. */
  readonly type: 'exclude_at_match' | 'include_at_match' | 'mask_sequences';
  /** The rule's name, under which the shutdown summary counts it. */
  readonly name: string;
  /** A Go (RE2) regular expression, searched anywhere in the line. */
  readonly pattern: string;
  /** For mask_sequences: what replaces each match ($1 or ${name} put a group back). */
  readonly replace_placeholder?: string;
}

/**
 * The extension's documented settings that a deployment sets in plain text,
 * typed. Each maps to the environment variable named in its doc comment;
 * README.md's Configuration table is the reference for their values and
 * defaults. Unset options leave the variable unset (the extension's default).
 * The extension checks every value at init and names the variable in its
 * error, so these types only catch what TypeScript can.
 */
export interface LokiSettings {
  /** LOKI_URL: Loki's full push URL. */
  readonly lokiUrl?: string;
  /** LOKI_IP: the article's host[:port]; pushes go to http://host:3100/api/prom/push. */
  readonly lokiIp?: string;
  /** LOKI_USERNAME: basic auth user (Grafana Cloud: the numeric instance ID). */
  readonly username?: string;
  /** LOKI_TENANT_ID: sent as X-Scope-OrgID. */
  readonly tenantId?: string;
  /** LOKI_CA_FILE: a PEM bundle of extra CAs, a path inside the function (e.g. /var/task/ca.pem). */
  readonly caFile?: string;
  /** LOKI_LABELS: extra static labels. */
  readonly labels?: Record<string, string>;
  /** LOKI_LEVEL_LABEL: add level from JSON records as a label. */
  readonly levelLabel?: boolean;
  /** LOKI_STRUCTURED_METADATA: send request_id, trace_id and level as structured metadata. */
  readonly structuredMetadata?: boolean;
  /** LOKI_TIMEOUT_MS: timeout of one request to Loki. */
  readonly lokiTimeout?: Duration;
  /** LOKI_MAX_LINE_BYTES: longer lines are truncated. */
  readonly maxLineBytes?: number;
  /** LOKI_MAX_REQUEST_BYTES: pushes are split at this size. */
  readonly maxRequestBytes?: number;
  /** LOKI_MIN_LEVEL: lines below this level are not shipped. */
  readonly minLevel?: Level;
  /** LOKI_PROCESSING_RULES: drop and mask lines before they leave. */
  readonly processingRules?: ProcessingRule[];
  /** FLUSH_STRATEGY. */
  readonly flushStrategy?: FlushStrategy;
  /** FLUSH_TIMEOUT_MS: the most one invocation's push may add before /next. */
  readonly flushTimeout?: Duration;
  /** DISPATCH_MIN_BATCH_SIZE: the article's setting. */
  readonly dispatchMinBatchSize?: number;
  /** QUEUE_MAX_ENTRIES: lines held in memory while Loki is away. */
  readonly queueMaxEntries?: number;
  /** QUEUE_MAX_BYTES: the same bound in bytes. */
  readonly queueMaxBytes?: number;
  /** QUEUE_SPILL_MAX_BYTES: the most the spill file in /tmp holds (0 turns it off). */
  readonly queueSpillMaxBytes?: number;
  /** OUTAGE_RETRY_MAX_MS: the longest wait between background attempts while Loki is away. */
  readonly outageRetryMax?: Duration;
  /** SECRETS_TIMEOUT_MS: the most fetching settings kept in AWS may take during init. */
  readonly secretsTimeout?: Duration;
  /** TELEMETRY_MAX_ITEMS: subscription buffering maxItems. */
  readonly telemetryMaxItems?: number;
  /** TELEMETRY_MAX_BYTES: subscription buffering maxBytes. */
  readonly telemetryMaxBytes?: number;
  /** TELEMETRY_TIMEOUT_MS: subscription buffering timeoutMs. */
  readonly telemetryTimeout?: Duration;
  /** SHIP_PLATFORM_LOGS: also ship START, END and REPORT lines. */
  readonly shipPlatformLogs?: boolean;
  /** SHIP_EXTENSION_LOGS: also ship extensions' own lines. */
  readonly shipExtensionLogs?: boolean;
  /** LOG_LEVEL: level of the extension's own log. */
  readonly logLevel?: Level;
  /** STRICT_CONFIG: fail the init on a configuration error instead of running without shipping. */
  readonly strictConfig?: boolean;
  /**
   * HTTPS_PROXY: the proxy the extension's requests go through (Go's standard
   * variable; a function in a VPC without a NAT gateway). The function's own
   * code sees it too, as every variable of the function.
   */
  readonly httpsProxy?: string;
  /** NO_PROXY: hosts reached directly, not through HTTPS_PROXY (e.g. VPC endpoints). */
  readonly noProxy?: string;
}

const ms = (d: Duration | undefined) => (d === undefined ? undefined : String(d.toMilliseconds()));
const bool = (b: boolean | undefined) => (b === undefined ? undefined : String(b));
const num = (n: number | undefined) => (n === undefined ? undefined : String(n));

/**
 * settingsEnvironment turns typed settings into the function's environment
 * variables, leaving out what is unset.
 */
export function settingsEnvironment(s: LokiSettings): Record<string, string> {
  const env: Record<string, string | undefined> = {
    LOKI_URL: s.lokiUrl,
    LOKI_IP: s.lokiIp,
    LOKI_USERNAME: s.username,
    LOKI_TENANT_ID: s.tenantId,
    LOKI_CA_FILE: s.caFile,
    LOKI_LABELS: s.labels && Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(','),
    LOKI_LEVEL_LABEL: bool(s.levelLabel),
    LOKI_STRUCTURED_METADATA: bool(s.structuredMetadata),
    LOKI_TIMEOUT_MS: ms(s.lokiTimeout),
    LOKI_MAX_LINE_BYTES: num(s.maxLineBytes),
    LOKI_MAX_REQUEST_BYTES: num(s.maxRequestBytes),
    LOKI_MIN_LEVEL: s.minLevel,
    LOKI_PROCESSING_RULES: s.processingRules && JSON.stringify(s.processingRules),
    FLUSH_STRATEGY: s.flushStrategy?.value,
    FLUSH_TIMEOUT_MS: ms(s.flushTimeout),
    DISPATCH_MIN_BATCH_SIZE: num(s.dispatchMinBatchSize),
    QUEUE_MAX_ENTRIES: num(s.queueMaxEntries),
    QUEUE_MAX_BYTES: num(s.queueMaxBytes),
    QUEUE_SPILL_MAX_BYTES: num(s.queueSpillMaxBytes),
    OUTAGE_RETRY_MAX_MS: ms(s.outageRetryMax),
    SECRETS_TIMEOUT_MS: ms(s.secretsTimeout),
    TELEMETRY_MAX_ITEMS: num(s.telemetryMaxItems),
    TELEMETRY_MAX_BYTES: num(s.telemetryMaxBytes),
    TELEMETRY_TIMEOUT_MS: ms(s.telemetryTimeout),
    SHIP_PLATFORM_LOGS: bool(s.shipPlatformLogs),
    SHIP_EXTENSION_LOGS: bool(s.shipExtensionLogs),
    LOG_LEVEL: s.logLevel,
    STRICT_CONFIG: bool(s.strictConfig),
    HTTPS_PROXY: s.httpsProxy,
    NO_PROXY: s.noProxy,
  };
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}
