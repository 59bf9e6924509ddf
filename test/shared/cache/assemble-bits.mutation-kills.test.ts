import { describe, expect, it } from 'vitest';
import { advanceCacheWindow, allocateWindow, placeFrames, type AssembledWindow } from '../../../shared/cache/assemble.js';

// Floats are moved as bits, never as numbers: a window carried in memory must be the very bytes of
// one read cold, and a float read into a JS number and written back may not keep a NaN's payload
// (a signalling NaN comes back quiet). The K/V here are all signalling NaNs, each with its own
// payload. In a file of its own, so these are the first copies this process makes.

const runs = 2, hd = 4, frameLen = runs * hd;
const shape = { runs, headDim: hd };
/** Frames-first K/V of `frames` frames from global frame `first`: signalling NaNs naming frame, run and lane. */
const nanKv = (first: number, frames: number) => {
  const bits = Uint32Array.from({ length: frames * frameLen }, (_, i) => 0x7f800000 | (((first + Math.floor(i / frameLen)) << 8) + (i % frameLen) + 1));
  return new Float32Array(bits.buffer);
};
const bitsOf = (w: AssembledWindow) => Array.from(new Uint32Array(w.cache.buffer, w.cache.byteOffset, w.cache.length));
/** The window of frames [first, first + P), written slot by slot as 32-bit words. */
function ringOf(first: number, P: number): number[] {
  const out = new Array<number>(P * frameLen).fill(0);
  for (let g = first; g < first + P; g++) {
    const frame = new Uint32Array(nanKv(g, 1).buffer);
    for (let a = 0; a < runs; a++) for (let k = 0; k < hd; k++) out[(a * P + (g % P)) * hd + k] = frame[a * hd + k];
  }
  return out;
}
/** `cache` at `offset` floats into a larger buffer. */
const atOffset = (cache: Float32Array, offset: number) => {
  const wider = new Float32Array(cache.length + offset + 2);
  new Uint32Array(wider.buffer).set(new Uint32Array(cache.buffer, cache.byteOffset, cache.length), offset);
  return wider.subarray(offset, offset + cache.length);
};

describe('floats keep their bits', () => {
  it.each([[0, 0], [1, 0], [0, 1], [1, 1]])('placeFrames, source at +%i floats, window at +%i', (srcOffset, dstOffset) => {
    const window = { ...allocateWindow(4, 8, shape, 'float32'), cache: atOffset(new Float32Array(4 * frameLen), dstOffset) };
    placeFrames(window, atOffset(nanKv(8, 4), srcOffset), 0, 4, 8, shape);
    expect(bitsOf(window)).toEqual(ringOf(8, 4));
  });

  it.each([0, 1])('advanceCacheWindow growing a window held at +%i floats', (offset) => {
    const start = allocateWindow(3, 0, shape, 'float32');
    placeFrames(start, nanKv(0, 3), 0, 3, 0, shape);
    let window: AssembledWindow = { ...start, cache: atOffset(start.cache as Float32Array, offset) };
    for (let end = 3; end < 9; end += 2) {
      window = advanceCacheWindow(window, nanKv(end, 2), end, 2, 8, shape);
      expect(bitsOf(window)).toEqual(ringOf(Math.max(0, end + 2 - 8), Math.min(end + 2, 8)));
    }
  });
});
