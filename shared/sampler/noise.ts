/**
 * Counter-based Gaussian noise: chunk k's noise is a pure function of (seed, chunk, stream, index),
 * so a retried chunk, another worker or another machine draws exactly the same values, and no
 * generator state has to be stored between chunks.
 *
 * Algorithm (documented so any language can reproduce it):
 * - Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11; Random123):
 *   key = (seed mod 2^32, floor(seed / 2^32));
 *   counter = (block mod 2^32, floor(block / 2^32), chunk mod 2^32, stream).
 *   Each round: (hi0, lo0) = 0xD2511F53 * c0, (hi1, lo1) = 0xCD9E8D57 * c2 (32x32 -> 64 bit),
 *   c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0); then k0 += 0x9E3779B9, k1 += 0xBB67AE85.
 *   Ten rounds. Block b yields 4 u32 words w0..w3, used for outputs 4b..4b+3.
 * - Uniforms u = (w + 0.5) / 2^32, strictly inside (0, 1) so log never sees 0.
 * - Box-Muller on (w0, w1) and (w2, w3): r = sqrt(-2 ln u_a), z = r cos(2 pi u_b), r sin(2 pi u_b).
 * - Output rounded to float32. Math.log/cos/sin are V8's fdlibm ports, identical on every OS/CPU.
 * The counter (not a running state) indexes the output, so any prefix or slice is reproducible.
 */

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two u32, from 16-bit halves (exact in doubles, no BigInt). */
function mulhi(a: number, b: number): number {
  const al = a & 0xffff;
  const ah = a >>> 16;
  const bl = b & 0xffff;
  const bh = b >>> 16;
  const lh = al * bh;
  const hl = ah * bl;
  const carry = (((al * bl) >>> 16) + (lh & 0xffff) + (hl & 0xffff)) >>> 16;
  return (ah * bh + (lh >>> 16) + (hl >>> 16) + carry) >>> 0;
}

/** Philox4x32-10 of one counter block under one key; writes 4 u32 into `out`. */
export function philox4x32(
  ctr: readonly [number, number, number, number],
  key: readonly [number, number],
  out: Uint32Array = new Uint32Array(4),
): Uint32Array {
  let [c0, c1, c2, c3] = ctr;
  let [k0, k1] = key;
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
  return out;
}

export interface NoiseKey {
  /** Job seed, an integer in 0..2^53-1. */
  seed: number;
  /** Chunk index (>= 0); -1 is allowed for noise tied to the starting frames. */
  chunk: number;
  /** Separates independent uses within one chunk (0 = initial x_T). */
  stream?: number;
}

/** Standard normal float32 samples 0..n-1 of the stream named by `key`. */
export function gaussianNoise(n: number, key: NoiseKey, out: Float32Array = new Float32Array(n)): Float32Array {
  const { seed, chunk, stream = 0 } = key;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be a safe non-negative integer, got ${seed}`);
  if (!Number.isInteger(chunk) || chunk < -1) throw new RangeError(`chunk must be an integer >= -1, got ${chunk}`);
  if (!Number.isInteger(stream) || stream < 0 || stream > 0xffffffff) throw new RangeError('stream must be a u32');
  if (n > 4 * 0x100000000) throw new RangeError('too many samples for one stream');
  const k: [number, number] = [seed >>> 0, Math.floor(seed / 0x100000000) >>> 0];
  const ctr: [number, number, number, number] = [0, 0, chunk >>> 0, stream >>> 0];
  const w = new Uint32Array(4);
  const TWO_PI = 2 * Math.PI;
  const INV = 2 ** -32;
  for (let b = 0, i = 0; i < n; b++) {
    ctr[0] = b >>> 0;
    ctr[1] = Math.floor(b / 0x100000000);
    philox4x32(ctr, k, w);
    for (let j = 0; j < 4 && i < n; j += 2) {
      const r = Math.sqrt(-2 * Math.log((w[j] + 0.5) * INV));
      const theta = TWO_PI * ((w[j + 1] + 0.5) * INV);
      out[i++] = r * Math.cos(theta);
      if (i < n) out[i++] = r * Math.sin(theta);
    }
  }
  return out;
}
