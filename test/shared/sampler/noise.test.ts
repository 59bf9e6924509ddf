import { describe, expect, it } from 'vitest';
import { gaussianNoise, philox4x32 } from '../../../shared/sampler/noise.js';

const hex = (a: Uint32Array) => [...a].map((x) => x.toString(16).padStart(8, '0'));

describe('philox4x32', () => {
  it('matches the Random123 known-answer vectors', () => {
    expect(hex(philox4x32([0, 0, 0, 0], [0, 0]))).toEqual(['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']);
    const ones = 0xffffffff;
    expect(hex(philox4x32([ones, ones, ones, ones], [ones, ones]))).toEqual([
      '408f276d', '41c83b0e', 'a20bc7c6', '6d5451fd',
    ]);
    expect(
      hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])),
    ).toEqual(['d16cfe09', '94fdcceb', '5001e420', '24126ea1']);
  });
});

describe('gaussianNoise', () => {
  it('is a pure function of (seed, chunk, stream): same key, same bits', () => {
    const a = gaussianNoise(4097, { seed: 42, chunk: 3 });
    const b = gaussianNoise(4097, { seed: 42, chunk: 3 });
    expect(Buffer.from(a.buffer).equals(Buffer.from(b.buffer))).toBe(true);
  });

  it('pins the first values (cross-checked with a Python port of the documented algorithm)', () => {
    const v = gaussianNoise(4, { seed: 42, chunk: 0 });
    expect(hex(new Uint32Array(v.buffer))).toEqual(['bf785e5c', '3e46ace8', 'bf9e28d2', '3ff6433b']);
  });

  it('indexes by counter: a shorter draw is a prefix of a longer one', () => {
    const long = gaussianNoise(1001, { seed: 7, chunk: 1 });
    expect(gaussianNoise(5, { seed: 7, chunk: 1 })).toEqual(long.subarray(0, 5));
    expect(gaussianNoise(1000, { seed: 7, chunk: 1 })).toEqual(long.subarray(0, 1000));
  });

  it('gives different streams for other chunks, seeds, streams and seeds above 2^32', () => {
    const base = gaussianNoise(64, { seed: 1, chunk: 0 });
    for (const key of [
      { seed: 1, chunk: 1 },
      { seed: 2, chunk: 0 },
      { seed: 1, chunk: 0, stream: 1 },
      { seed: 1 + 2 ** 32, chunk: 0 },
      { seed: 1, chunk: -1 },
    ]) {
      expect(gaussianNoise(64, key)).not.toEqual(base);
    }
  });

  it('is standard normal: mean ~0, std ~1, 68.3% within one sigma, chunks uncorrelated', () => {
    const n = 1 << 20;
    const a = gaussianNoise(n, { seed: 123, chunk: 0 });
    const b = gaussianNoise(n, { seed: 123, chunk: 1 });
    let sum = 0;
    let sq = 0;
    let within = 0;
    let cross = 0;
    for (let i = 0; i < n; i++) {
      sum += a[i];
      sq += a[i] * a[i];
      if (Math.abs(a[i]) < 1) within++;
      cross += a[i] * b[i];
    }
    const mean = sum / n;
    expect(Math.abs(mean)).toBeLessThan(0.005);
    expect(Math.abs(Math.sqrt(sq / n - mean * mean) - 1)).toBeLessThan(0.005);
    expect(Math.abs(within / n - 0.6827)).toBeLessThan(0.003);
    expect(Math.abs(cross / n)).toBeLessThan(0.005);
    expect(a.every(Number.isFinite)).toBe(true);
  });

  it('rejects seeds and chunks it cannot represent', () => {
    expect(() => gaussianNoise(1, { seed: -1, chunk: 0 })).toThrow(RangeError);
    expect(() => gaussianNoise(1, { seed: 2 ** 53, chunk: 0 })).toThrow(RangeError);
    expect(() => gaussianNoise(1, { seed: 0, chunk: 1.5 })).toThrow(RangeError);
  });
});
