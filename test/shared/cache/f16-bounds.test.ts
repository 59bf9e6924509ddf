import { describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from '../../../shared/cache/f16.js';

describe('f16 conversions into a caller-given output', () => {
  it('refuse an output shorter than the input', () => {
    expect(() => f32ToF16(new Float32Array(3), new Uint16Array(2))).toThrow(/f32ToF16: output too short/);
    expect(() => f16ToF32(new Uint16Array(3), new Float32Array(2))).toThrow(/f16ToF32: output too short/);
  });

  it('write exactly as many values as the input has into a longer output', () => {
    const half = f32ToF16(Float32Array.of(1, -2), new Uint16Array(3).fill(0xabcd));
    expect([...half]).toEqual([0x3c00, 0xc000, 0xabcd]);
    const full = f16ToF32(Uint16Array.of(0x3c00, 0xc000), new Float32Array(3).fill(7));
    expect([...full]).toEqual([1, -2, 7]);
  });
});
