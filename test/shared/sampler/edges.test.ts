// Argument checks and array bounds of the sampler, and gaussianNoise beyond its first Philox block,
// computed here from the algorithm documented in noise.ts (Philox block b -> Box-Muller pairs).
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ddimStep, denoise, guide, type StepModel } from '../../../shared/sampler/ddim.js';
import { gaussianNoise, philox4x32 } from '../../../shared/sampler/noise.js';
import { ddimSchedule, ddimTimesteps } from '../../../shared/sampler/schedule.js';
import { cosineAlphasCumprod } from './helpers.js';

const AC = cosineAlphasCumprod();
const RANGE = [-1, 1] as const;

/** Sample i of the stream, straight from the documented algorithm. */
function documented(seed: number, chunk: number, stream: number, n: number): Float32Array {
  const out = new Float32Array(n);
  const key: [number, number] = [seed >>> 0, Math.floor(seed / 2 ** 32) >>> 0];
  for (let i = 0; i < n; i += 4) {
    const b = i / 4;
    const w = philox4x32([b >>> 0, Math.floor(b / 2 ** 32), chunk >>> 0, stream], key);
    const u = [...w].map((x) => (x + 0.5) / 2 ** 32);
    const z = [
      Math.sqrt(-2 * Math.log(u[0])) * Math.cos(2 * Math.PI * u[1]), Math.sqrt(-2 * Math.log(u[0])) * Math.sin(2 * Math.PI * u[1]),
      Math.sqrt(-2 * Math.log(u[2])) * Math.cos(2 * Math.PI * u[3]), Math.sqrt(-2 * Math.log(u[2])) * Math.sin(2 * Math.PI * u[3]),
    ];
    for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = z[j];
  }
  return out;
}

const sha = (a: Float32Array) => createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex');

describe('gaussianNoise beyond the first block', () => {
  it('equals the documented algorithm over many blocks, bit for bit', () => {
    for (const [seed, chunk, stream] of [[42, 0, 0], [7, 3, 1], [2 ** 40 + 5, -1, 0]]) {
      expect(sha(gaussianNoise(8191, { seed, chunk, stream }))).toBe(sha(documented(seed, chunk, stream, 8191)));
    }
  });

  it('writes exactly n values into a longer output array (odd n ends mid-pair)', () => {
    for (const n of [5, 6, 7]) {
      const out = new Float32Array(n + 4).fill(99);
      gaussianNoise(n, { seed: 1, chunk: 0 }, out);
      expect([...out.subarray(n)]).toEqual([99, 99, 99, 99]);
      expect(out.subarray(0, n)).toEqual(documented(1, 0, 0, n));
    }
  });
});

describe('gaussianNoise key checks', () => {
  const ok = (key: Parameters<typeof gaussianNoise>[1]) => expect(gaussianNoise(2, key)).toHaveLength(2);
  it('accepts the edges of each range', () => {
    ok({ seed: 0, chunk: -1 });
    ok({ seed: Number.MAX_SAFE_INTEGER, chunk: 0, stream: 0xffffffff });
    ok({ seed: 1, chunk: 0, stream: 0 });
  });
  it('refuses what lies outside, saying which', () => {
    expect(() => gaussianNoise(2, { seed: -1, chunk: 0 })).toThrow(/seed must be a safe non-negative integer, got -1/);
    expect(() => gaussianNoise(2, { seed: 1.5, chunk: 0 })).toThrow(/seed must be/);
    expect(() => gaussianNoise(2, { seed: 1, chunk: -2 })).toThrow(/chunk must be an integer >= -1, got -2/);
    expect(() => gaussianNoise(2, { seed: 1, chunk: 0.5 })).toThrow(/chunk must be/);
    expect(() => gaussianNoise(2, { seed: 1, chunk: 0, stream: -1 })).toThrow(/stream must be a u32/);
    expect(() => gaussianNoise(2, { seed: 1, chunk: 0, stream: 2 ** 32 })).toThrow(/stream must be a u32/);
    expect(() => gaussianNoise(2, { seed: 1, chunk: 0, stream: 0.5 })).toThrow(/stream must be a u32/);
    expect(() => gaussianNoise(4 * 2 ** 32 + 1, { seed: 1, chunk: 0 }, new Float32Array(1))).toThrow(/too many samples/);
  });
});

describe('ddimStep, guide, denoise edges', () => {
  const step = { alpha: 0.5, alphaPrev: 0.9 };
  it('refuses alpha outside (0, 1) and a prediction of another length', () => {
    expect(() => ddimStep(new Float32Array(2), new Float32Array(2), { alpha: 0, alphaPrev: 1 }, 'v', RANGE)).toThrow(/alpha must be in \(0, 1\), got 0/);
    expect(() => ddimStep(new Float32Array(2), new Float32Array(2), { alpha: 1, alphaPrev: 1 }, 'v', RANGE)).toThrow(/alpha must be/);
    expect(() => ddimStep(new Float32Array(2), new Float32Array(3), step, 'v', RANGE)).toThrow(/prediction has 3 values, x has 2/);
    expect(() => guide(new Float32Array(3), 2)).toThrow(/guided prediction must have 2 equal rows/);
  });

  it('clips x0 below the range as well as above it', () => {
    const x = Float32Array.of(0.3, 0.3);
    const out = ddimStep(x, Float32Array.of(-3, 3), step, 'x0', RANGE);
    const sa = Math.sqrt(0.5), s1a = Math.sqrt(0.5), sp = Math.sqrt(0.9), s1p = Math.sqrt(0.1);
    const expectFor = (x0: number) => Math.fround(sp * x0 + s1p * ((0.3 - sa * x0) / s1a));
    expect([...out]).toEqual([expectFor(-1), expectFor(1)]);
  });

  it('writes only x.length values into a longer output, and guide only one row', () => {
    const out = new Float32Array(3).fill(99);
    ddimStep(Float32Array.of(0.1, 0.2), Float32Array.of(0, 0), step, 'eps', RANGE, out);
    expect(out[2]).toBe(99);
    const g = new Float32Array(3).fill(99);
    guide(Float32Array.of(1, 2, 3, 4), 2, g);
    expect([...g]).toEqual([-1, 0, 99]); // uncond + 2 (cond - uncond)
  });

  it('hands a guided model both rows of x, and refuses a model answer of the wrong size', async () => {
    const n = 4;
    const seen: number[] = [];
    const model: StepModel = (x, _t, rows) => { seen.push(x.length, rows); return new Float32Array(rows * n); };
    await denoise({ noise: new Float32Array(n), steps: ddimSchedule(AC, 2), prediction: 'v', range: RANGE, guidance: 3, model });
    expect(seen).toEqual([2 * n, 2, 2 * n, 2]);
    seen.length = 0;
    await denoise({ noise: new Float32Array(n), steps: ddimSchedule(AC, 1), prediction: 'v', range: RANGE, model });
    expect(seen).toEqual([n, 1]);
    const short: StepModel = () => new Float32Array(n);
    await expect(denoise({ noise: new Float32Array(n), steps: ddimSchedule(AC, 1), prediction: 'v', range: RANGE, guidance: 3, model: short }))
      .rejects.toThrow(/model returned 4 values, expected 8/);
  });

  it('serves one step, and says which step counts it refuses', () => {
    expect(ddimTimesteps(1, 1000)).toEqual([999]);
    expect(() => ddimTimesteps(0, 1000)).toThrow(/steps must be an integer in 1..1000, got 0/);
  });
});
