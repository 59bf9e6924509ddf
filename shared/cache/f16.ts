/**
 * IEEE 754 binary16 <-> binary32 on whole typed arrays. Node 20 has no Float16Array, and K/V are
 * stored as fp16 to halve the bytes each chunk writes and reads.
 *
 * Encoding works on the float's bits (a Uint32Array view, no per-element allocation) after
 * F. Giesen's "float_to_half_fast3_rtne", with the subnormal branch done in integers too, so the
 * result never depends on double-to-float rounding: round to nearest, ties to even; overflow
 * gives +-inf; NaN stays NaN (quiet); tiny values become fp16 subnormals or signed zero.
 * Decoding is one lookup in a 65536-entry table (256 KiB, built on first use).
 */

const F32_INF = 0xff << 23;
const F16_MAX_AS_F32 = (127 + 16) << 23; // first float whose fp16 exponent would be 31 (inf/NaN)
const F16_MIN_NORMAL_AS_F32 = 113 << 23; // 2^-14, the smallest normal fp16

/** Rounds every float of `src` to fp16 bits; `out` may be given to reuse memory. */
export function f32ToF16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  if (out.length < src.length) throw new RangeError('f32ToF16: output too short');
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i];
    const sign = (x >>> 16) & 0x8000;
    const u = x & 0x7fffffff;
    let h: number;
    if (u >= F16_MAX_AS_F32) {
      h = u > F32_INF ? 0x7e00 : 0x7c00;
    } else if (u < F16_MIN_NORMAL_AS_F32) {
      // fp16 subnormal (or zero): count in units of 2^-24 and round the dropped bits half-to-even.
      const e = u >>> 23;
      const shift = 126 - e; // value = mant * 2^(e-150) = (mant >> shift) units of 2^-24
      if (e === 0 || shift > 24) {
        h = 0; // below half of the smallest fp16 subnormal (f32 subnormals included)
      } else {
        const mant = (u & 0x7fffff) | 0x800000;
        const q = mant >>> shift;
        const rem = mant & ((1 << shift) - 1);
        const half = 1 << (shift - 1);
        h = rem > half || (rem === half && (q & 1) === 1) ? q + 1 : q;
      }
    } else {
      // Re-bias the exponent and add 0x0fff (+1 if the kept mantissa is odd) so the >> 13
      // rounds half-to-even; a carry out of the mantissa correctly bumps the exponent (to inf).
      const odd = (u >>> 13) & 1;
      h = (u + ((15 - 127) << 23) + 0xfff + odd) >>> 13;
    }
    out[i] = h | sign;
  }
  return out;
}

let table: Float32Array | undefined;

/** fp16 bits -> float, for every 16-bit pattern (exact). */
export function f16Table(): Float32Array {
  if (table) return table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) t[h] = sign * mant * 2 ** -24;
    else if (exp === 31) t[h] = mant ? NaN : sign * Infinity;
    else t[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  table = t;
  return t;
}

/** Widens fp16 bits to floats (exact: every fp16 value is a float32). */
export function f16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  if (out.length < src.length) throw new RangeError('f16ToF32: output too short');
  const t = f16Table();
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]];
  return out;
}
