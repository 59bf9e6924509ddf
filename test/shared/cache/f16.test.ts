import { describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from '../../../shared/cache/f16.js';

const enc = (...v: number[]) => [...f32ToF16(Float32Array.from(v))];
const dec = (...h: number[]) => [...f16ToF32(Uint16Array.from(h))];

describe('fp16 codec', () => {
  it('encodes exact values, limits and specials', () => {
    expect(enc(0, -0, 1, -2, 0.5, 65504)).toEqual([0x0000, 0x8000, 0x3c00, 0xc000, 0x3800, 0x7bff]);
    expect(enc(Infinity, -Infinity, 1e6, -1e6)).toEqual([0x7c00, 0xfc00, 0x7c00, 0xfc00]);
    expect(enc(2 ** -14, 2 ** -24, 1023 * 2 ** -24)).toEqual([0x0400, 0x0001, 0x03ff]);
    const [nan] = enc(NaN);
    expect(nan & 0x7c00).toBe(0x7c00);
    expect(nan & 0x03ff).not.toBe(0);
  });

  it('rounds to nearest, ties to even, for normals, subnormals and overflow', () => {
    // 1 + 2^-11 is halfway between 1 and the next fp16: even (1) wins; 1 + 3*2^-11 goes up to even.
    expect(enc(1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -11 + 2 ** -20)).toEqual([0x3c00, 0x3c02, 0x3c01]);
    // Subnormal ties in units of 2^-24: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2; just above half rounds up.
    expect(enc(2 ** -25, 1.5 * 2 ** -24, 2.5 * 2 ** -24, 2 ** -25 + 2 ** -40)).toEqual([0, 2, 2, 1]);
    // Largest subnormal + half an ulp carries into the smallest normal.
    expect(enc(1023.5 * 2 ** -24)).toEqual([0x0400]);
    // 65520 is halfway between 65504 and 2^16: ties to even means overflow to infinity.
    expect(enc(65519, 65520)).toEqual([0x7bff, 0x7c00]);
    expect(enc(2 ** -26, -(2 ** -30), 1e-45)).toEqual([0, 0x8000, 0]);
  });

  it('decodes every fp16 value and re-encodes it to the same bits (NaN stays NaN)', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const wide = f16ToF32(all);
    const back = f32ToF16(wide);
    for (let h = 0; h < 65536; h++) {
      const isNan = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (isNan) expect(Number.isNaN(wide[h])).toBe(true);
      else if (back[h] !== h) throw new Error(`fp16 ${h.toString(16)} came back as ${back[h].toString(16)}`);
    }
    expect(dec(0x3c00, 0xc000, 0x0001, 0x7c00)).toEqual([1, -2, 2 ** -24, Infinity]);
  });

  it('picks the nearest fp16 for random floats across the whole range', () => {
    const x = new Float32Array(200_000).map((_, i) => (Math.random() - 0.5) * 2 ** ((i % 44) - 28));
    const h = f32ToF16(x);
    const y = f16ToF32(h);
    for (let i = 0; i < x.length; i++) {
      const err = Math.abs(y[i] - x[i]);
      // Neighbours one ulp either side must not be strictly closer.
      for (const n of f16ToF32(Uint16Array.of(h[i] + 1, Math.max(0, h[i] - 1)))) {
        if (Number.isFinite(n) && Math.sign(n) === Math.sign(y[i]) && Math.abs(n - x[i]) < err) {
          throw new Error(`f32 ${x[i]} -> ${y[i]}, but ${n} is closer`);
        }
      }
    }
  });
});
