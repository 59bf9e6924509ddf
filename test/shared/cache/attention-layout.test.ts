import { describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from '../../../shared/cache/f16.js';
import { advanceCacheWindow, assembleAttentionCache, placeFrames, planCacheRead, type SegmentInfo } from '../../../shared/cache/assemble.js';

const runs = 6, hd = 4, frameFloats = runs * hd;
const shape = { runs, headDim: hd };
/** K/V of `frames` frames from global frame `first`: every float names its frame, run and lane. */
const kvOf = (first: number, frames: number) =>
  Float32Array.from({ length: frames * frameFloats }, (_, i) => (first + Math.floor(i / frameFloats)) * 1000 + (i % frameFloats));

/** A job's segments: a prefix of `given` frames, then chunks of `l` frames up to `end`. */
function segments(given: number, l: number, end: number): SegmentInfo[] {
  const out: SegmentInfo[] = given > 0 ? [{ chunk: -1, firstFrame: 0, frames: given }] : [];
  for (let c = 0; given + (c + 1) * l <= end; c++) out.push({ chunk: c, firstFrame: given + c * l, frames: l });
  return out;
}

function assembleAt(given: number, l: number, end: number, pMax: number) {
  const plan = planCacheRead(segments(given, l, end), pMax, { endFrame: end });
  return { plan, window: assembleAttentionCache(plan, plan.segments.map((s) => kvOf(s.firstFrame, s.frames)), shape) };
}

describe('assembleAttentionCache', () => {
  it('holds the frames-first window with the frame axis moved inwards, frame g in slot g mod P', () => {
    // Prefix of 2 frames, then chunks of 3 frames; window of 7 frames -> the oldest is sliced.
    const { plan, window } = assembleAt(2, 3, 8, 7);
    expect(plan.skipFrames).toBe(1);
    const framesFirst = kvOf(plan.firstFrame, plan.frames); // the window's frames, oldest first, frames-first
    const P = window.frames;
    expect([P, window.firstFrame]).toEqual([7, 1]);
    for (let p = 0; p < P; p++) {
      const slot = (window.firstFrame + p) % P;
      for (let a = 0; a < runs; a++) {
        for (let k = 0; k < hd; k++) expect(window.cache[(a * P + slot) * hd + k]).toBe(framesFirst[(p * runs + a) * hd + k]);
      }
    }
  });

  it('rejects a segment of the wrong size', () => {
    const plan = planCacheRead([{ chunk: 0, firstFrame: 0, frames: 2 }], 4, { endFrame: 2 });
    expect(() => assembleAttentionCache(plan, [new Float32Array(5)], { runs: 2, headDim: 2 })).toThrow(/floats/);
  });
});

describe('advanceCacheWindow', () => {
  it.each([
    { given: 4, l: 4, pMax: 12 }, // the shipped model: grows 4 -> 8 -> 12, then slides in place
    { given: 3, l: 4, pMax: 10 }, // a window that is no multiple of the chunk
    { given: 0, l: 5, pMax: 3 }, // chunks longer than the window
  ])('equals assembling the next window from segments, byte for byte (given $given, l $l, P_max $pMax)', ({ given, l, pMax }) => {
    let end = given > 0 ? given : l;
    let window = assembleAt(given, l, end, pMax).window;
    for (let step = 0; step < 8; step++) {
      const before = window.cache;
      window = advanceCacheWindow(window, kvOf(end, l), end, l, pMax, shape);
      end += l;
      const fresh = assembleAt(given, l, end, pMax).window;
      expect([window.frames, window.firstFrame]).toEqual([fresh.frames, fresh.firstFrame]);
      expect(window.cache).toEqual(fresh.cache);
      if (window.frames === pMax && before.length === window.cache.length) expect(window.cache).toBe(before); // in place
    }
  });

  it('takes fp16 bits as the step graph emits them, widening them as it copies', () => {
    const bits = f32ToF16(kvOf(8, 4).map((v) => v / 7));
    const { window } = assembleAt(4, 4, 8, 12);
    const copy = { ...window, cache: window.cache.slice() };
    const fromBits = advanceCacheWindow(window, bits, 8, 4, 12, shape);
    const fromFloats = advanceCacheWindow(copy, f16ToF32(bits), 8, 4, 12, shape);
    expect(fromBits.cache).toEqual(fromFloats.cache);
  });

  it('refuses frames that do not start where the window ends', () => {
    const { window } = assembleAt(4, 4, 8, 12);
    expect(() => advanceCacheWindow(window, kvOf(12, 4), 12, 4, 12, shape)).toThrow(/window ends at 8/);
    expect(() => advanceCacheWindow(window, new Float32Array(3), 8, 4, 12, shape)).toThrow(/floats/);
  });
});

describe('a frames-first window (one run per frame)', () => {
  const frameLen = frameFloats;
  const flat = { runs: 1, headDim: frameLen };
  /** The window of frames [first, first + P) in ring order, built slot by slot. */
  const ringOf = (first: number, P: number) => {
    const cache = new Float32Array(P * frameLen);
    for (let g = first; g < first + P; g++) cache.set(kvOf(g, 1), (g % P) * frameLen);
    return { cache, frames: P, firstFrame: first };
  };

  it.each([
    { first: 0, P: 4, l: 4, pMax: 12 },
    { first: 5, P: 3, l: 4, pMax: 10 }, // a window that starts later: its kept frames move to new slots
    { first: 7, P: 6, l: 5, pMax: 9 }, // growing to P_max drops the oldest frames
    { first: 2, P: 0, l: 3, pMax: 7 },
    { first: 11, P: 8, l: 2, pMax: 9 },
  ])('grows and slides to the same bytes as a window built slot by slot (first $first, P $P, l $l, P_max $pMax)', ({ first, P, l, pMax }) => {
    let window = ringOf(first, P) as ReturnType<typeof ringOf> | ReturnType<typeof advanceCacheWindow>;
    let end = first + P;
    let buffer: ArrayBufferLike | undefined;
    for (let step = 0; step < 6; step++) {
      window = advanceCacheWindow(window, kvOf(end, l), end, l, pMax, flat);
      end += l;
      const frames = Math.min(end - first, pMax);
      const want = ringOf(end - frames, frames);
      expect([window.frames, window.firstFrame]).toEqual([want.frames, want.firstFrame]);
      expect(Array.from(window.cache)).toEqual(Array.from(want.cache));
      // From the first growth on, one buffer of P_max frames: no window after it allocates.
      if (buffer) expect(window.cache.buffer).toBe(buffer);
      buffer = window.cache.buffer;
    }
  });

  it('is the frames-first K/V as segments store them, with the slots in ring order', () => {
    const { plan, window } = assembleAt(2, 3, 14, 7);
    const flatWindow = assembleAttentionCache(plan, plan.segments.map((s) => kvOf(s.firstFrame, s.frames)), flat);
    const P = window.frames;
    for (let g = window.firstFrame; g < window.firstFrame + P; g++) {
      expect(Array.from(flatWindow.cache.subarray((g % P) * frameLen, (g % P + 1) * frameLen))).toEqual(Array.from(kvOf(g, 1)));
    }
  });
});

describe('placeFrames with frame-long runs', () => {
  it('copies each frame whole into its ring slot (fp16 bits and floats alike)', () => {
    const frameLen = 10_000; // above the block-copy threshold
    const shape = { runs: 1, headDim: frameLen };
    for (const make of [(n: number) => new Uint16Array(n), (n: number) => new Float32Array(n)]) {
      const src = make(3 * frameLen).map((_, i) => (Math.floor(i / frameLen) + 1) * 1000 + (i % 997));
      const window = { cache: make(4 * frameLen), frames: 4, firstFrame: 5 };
      placeFrames(window, src, 1, 2, 7, shape); // source frames 1 and 2 are global frames 7 and 8: slots 3 and 0
      expect(Array.from(window.cache.subarray(3 * frameLen, 4 * frameLen))).toEqual(Array.from(src.subarray(frameLen, 2 * frameLen)));
      expect(Array.from(window.cache.subarray(0, frameLen))).toEqual(Array.from(src.subarray(2 * frameLen, 3 * frameLen)));
      expect(window.cache.subarray(frameLen, 3 * frameLen).every((v) => v === 0)).toBe(true);
    }
  });
});
