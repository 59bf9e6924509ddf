import type { Node } from 'constructs';

/** Deployment settings, read from CDK context (`cdk.json` defaults, `-c key=value` overrides). */
export interface DeployConfig {
  /** EC2 instance type of the GPU workers; x86_64 g4dn/g5/g6/g6e (onnxruntime-node ships CUDA only for linux/x64). */
  readonly instanceType: string;
  /** Workers kept running when the queue is empty; 0 scales the GPU fleet to zero. */
  readonly minWorkers: number;
  /** Upper bound on workers (and GPU instances: one task per GPU instance). */
  readonly maxWorkers: number;
  /** Folder under `model/artifacts/` baked into the worker image and whose manifest the API bundles. */
  readonly modelName: string;
  /** Per-key API throttle (steady requests per second) and burst. */
  readonly apiRateLimit: number;
  readonly apiBurstLimit: number;
  /** Per-key requests per day. */
  readonly apiQuotaPerDay: number;
  /** CloudWatch Logs retention of every log group, in days. */
  readonly retentionDays: number;
  /** Cache segments tagged as expiring are deleted this many days after they are written. */
  readonly keepCacheDays: number;
  /** Minutes the queue must stay below one task per worker before a worker is removed. */
  readonly scaleInIdleMinutes: number;
}

export const DEFAULT_CONFIG: DeployConfig = {
  instanceType: 'g5.xlarge',
  minWorkers: 0,
  maxWorkers: 4,
  modelName: 'balls32-v1',
  apiRateLimit: 10,
  apiBurstLimit: 20,
  apiQuotaPerDay: 10_000,
  retentionDays: 30,
  keepCacheDays: 7,
  scaleInIdleMinutes: 10,
};

/** The retention periods CloudWatch Logs accepts. */
export const LOG_RETENTION_DAYS: readonly number[] = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
];

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Reads every key of `DeployConfig` from context (strings from `-c` are converted), then validates. */
export function readConfig(node: Node): DeployConfig {
  const num = (key: keyof DeployConfig): number => {
    const raw: unknown = node.tryGetContext(key);
    if (raw === undefined) return DEFAULT_CONFIG[key] as number;
    const n = typeof raw === 'number' ? raw : Number(raw);
    if (!Number.isFinite(n)) throw new ConfigError(`context ${key} must be a number, got ${JSON.stringify(raw)}`);
    return n;
  };
  const str = (key: keyof DeployConfig): string => {
    const raw: unknown = node.tryGetContext(key);
    return raw === undefined ? (DEFAULT_CONFIG[key] as string) : String(raw);
  };
  return validateConfig({
    instanceType: str('instanceType'),
    minWorkers: num('minWorkers'),
    maxWorkers: num('maxWorkers'),
    modelName: str('modelName'),
    apiRateLimit: num('apiRateLimit'),
    apiBurstLimit: num('apiBurstLimit'),
    apiQuotaPerDay: num('apiQuotaPerDay'),
    retentionDays: num('retentionDays'),
    keepCacheDays: num('keepCacheDays'),
    scaleInIdleMinutes: num('scaleInIdleMinutes'),
  });
}

/** Throws a ConfigError naming the first bad setting; returns the config unchanged otherwise. */
export function validateConfig(c: DeployConfig): DeployConfig {
  const int = (key: keyof DeployConfig, min: number, max = Number.MAX_SAFE_INTEGER) => {
    const v = c[key] as number;
    if (!Number.isInteger(v) || v < min || v > max) throw new ConfigError(`${key} must be an integer in [${min}, ${max}], got ${v}`);
  };
  // g5g and other Graviton GPU types are excluded: the CUDA execution provider of onnxruntime-node is x64-only.
  if (!/^(g4dn|g5|g6|g6e)\.[a-z0-9]+$/.test(c.instanceType)) {
    throw new ConfigError(`instanceType must be an x86_64 NVIDIA type (g4dn, g5, g6, g6e), got ${c.instanceType}`);
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(c.modelName)) throw new ConfigError(`modelName is not a folder name: ${c.modelName}`);
  int('minWorkers', 0, 1000);
  int('maxWorkers', 1, 1000);
  if (c.minWorkers > c.maxWorkers) throw new ConfigError(`minWorkers (${c.minWorkers}) exceeds maxWorkers (${c.maxWorkers})`);
  int('apiRateLimit', 1);
  int('apiBurstLimit', 1, 5000);
  int('apiQuotaPerDay', 1);
  if (!LOG_RETENTION_DAYS.includes(c.retentionDays)) {
    throw new ConfigError(`retentionDays must be one of CloudWatch's values ${LOG_RETENTION_DAYS.join(', ')}, got ${c.retentionDays}`);
  }
  int('keepCacheDays', 1, 3650);
  int('scaleInIdleMinutes', 1, 60);
  return c;
}
