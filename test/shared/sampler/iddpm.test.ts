import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { iddpmSchedule, iddpmStep, respacedTimesteps } from '../../../shared/sampler/iddpm.js';

// Written by model/official/fixtures.py from model/official/sampling.py (the sampler the equivalence
// with the official code was checked on): the 10-step tables and three steps on random values.
const fx = JSON.parse(readFileSync(new URL('./fixtures/iddpm-official.json', import.meta.url), 'utf8')) as {
  alphas_cumprod: number[]; steps: number; timesteps: number[]; frame_values: number;
  tables: Record<string, number[]>; x: number[]; out: number[]; noise: number[]; next: Record<string, number[]>;
};

const maxRelDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / Math.max(1e-6, Math.abs(b[i])));
  return m;
};

describe('IDDPM with learned variance (the official sampler)', () => {
  it('keeps the timesteps IDDPM respacing keeps', () => {
    expect(respacedTimesteps(fx.steps, 1000)).toEqual(fx.timesteps);
    const hundred = respacedTimesteps(100, 1000);
    expect(hundred.slice(0, 4)).toEqual([0, 10, 20, 30]);
    expect(hundred.at(-1)).toBe(999);
    expect(respacedTimesteps(3, 1000)).toEqual([0, 500, 999]);   // 499.5 rounds half to even
    expect(() => respacedTimesteps(0, 1000)).toThrow(RangeError);
  });

  it('builds the same float32 tables as the Python sampler', () => {
    const s = iddpmSchedule(fx.alphas_cumprod, fx.steps);
    for (const [name, want] of Object.entries(fx.tables)) {
      expect(maxRelDiff(s[name as keyof typeof s] as Float32Array, want), name).toBeLessThan(1e-6);
    }
  });

  it('takes the same steps, noisy ones and the last (no noise)', () => {
    const s = iddpmSchedule(fx.alphas_cumprod, fx.steps);
    const x = Float32Array.from(fx.x);
    for (const [i, want] of Object.entries(fx.next)) {
      const got = iddpmStep(x, Float32Array.from(fx.out), s, Number(i), Float32Array.from(fx.noise), fx.frame_values);
      expect(maxRelDiff(got, want), `step ${i}`).toBeLessThan(1e-5);
    }
    // The variance output matters at a noisy step and not at the last one.
    const out2 = Float32Array.from(fx.out);
    for (let k = fx.frame_values; k < 2 * fx.frame_values; k++) out2[k] += 0.5;
    const a = iddpmStep(x, Float32Array.from(fx.out), s, 5, Float32Array.from(fx.noise), fx.frame_values);
    const b = iddpmStep(x, out2, s, 5, Float32Array.from(fx.noise), fx.frame_values);
    expect(maxRelDiff(a, b)).toBeGreaterThan(1e-3);
    expect(iddpmStep(x, out2, s, 0, Float32Array.from(fx.noise), fx.frame_values)).toEqual(
      iddpmStep(x, Float32Array.from(fx.out), s, 0, Float32Array.from(fx.noise), fx.frame_values));
  });
});
