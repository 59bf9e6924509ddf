import { App } from 'aws-cdk-lib';
import { describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_CONFIG, readConfig, validateConfig } from '../../infra/config.js';

describe('deploy config', () => {
  it('reads context values, converting -c strings to numbers', () => {
    const app = new App({ context: { minWorkers: '1', maxWorkers: 6, instanceType: 'g6.2xlarge' } });
    expect(readConfig(app.node)).toEqual({ ...DEFAULT_CONFIG, minWorkers: 1, maxWorkers: 6, instanceType: 'g6.2xlarge' });
  });

  it.each([
    [{ instanceType: 'g5g.xlarge' }, /x86_64/],
    [{ instanceType: 'm5.large' }, /x86_64/],
    [{ minWorkers: 5, maxWorkers: 2 }, /exceeds/],
    [{ minWorkers: -1 }, /minWorkers/],
    [{ retentionDays: 10 }, /retentionDays/],
    [{ keepCacheDays: 0 }, /keepCacheDays/],
  ])('rejects %j before building anything', (override, message) => {
    expect(() => validateConfig({ ...DEFAULT_CONFIG, ...override })).toThrow(ConfigError);
    expect(() => validateConfig({ ...DEFAULT_CONFIG, ...override })).toThrow(message);
  });

  it('accepts zero minimum workers (scale to zero)', () => {
    expect(validateConfig({ ...DEFAULT_CONFIG, minWorkers: 0 }).minWorkers).toBe(0);
  });
});
