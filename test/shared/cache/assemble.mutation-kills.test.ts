import { describe, expect, it } from 'vitest';
import {
  advanceCacheWindow,
  allocateWindow,
  assembleAttentionCache,
  emptyWindow,
  placeFrames,
  planCacheRead,
  type AssembledWindow,
  type AttentionShape,
  type CacheDtype,
  type SegmentInfo,
} from '../../../shared/cache/assemble.js';
import { CacheGapError, SegmentMismatchError } from '../../../shared/cache/errors.js';
import { f16ToF32, f32ToF16 } from '../../../shared/cache/f16.js';
import type { KvData } from '../../../shared/cache/segment.js';

// The window's contract, checked against a window written out slot by slot here: frame g's run a
// sits in ring slot g mod P of that run ([runs, P, hd]); fp16 into fp16 and floats into floats keep
// their bits, fp16 into floats widens exactly, floats into fp16 rounds as the codec does.

/** Frames-first K/V of `frames` frames from global frame `first`, floats: every value names its frame, run and lane. */
const floatsOf = (first: number, frames: number, shape: AttentionShape) => {
  const frameLen = shape.runs * shape.headDim;
  return Float32Array.from({ length: frames * frameLen }, (_, i) => (first + Math.floor(i / frameLen)) + (i % frameLen) / 64 + 1 / 3);
};
/** The same K/V as the graph emits it in `dtype`. */
const kvOf = (first: number, frames: number, shape: AttentionShape, dtype: CacheDtype): KvData =>
  dtype === 'float16' ? f32ToF16(floatsOf(first, frames, shape)) : floatsOf(first, frames, shape);

/** `v` (floats or fp16 bits) as `dtype` holds it. */
function convert(v: KvData, dtype: CacheDtype): KvData {
  if (dtype === 'float16') return v instanceof Uint16Array ? v : f32ToF16(v);
  return v instanceof Uint16Array ? f16ToF32(v) : v;
}

/** The window of frames [first, first + P) of `kvAt`, written slot by slot. */
function ringOf(kvAt: (g: number) => KvData, first: number, P: number, shape: AttentionShape, dtype: CacheDtype): AssembledWindow {
  const { runs, headDim: hd } = shape;
  const window = allocateWindow(P, first, shape, dtype);
  for (let g = first; g < first + P; g++) {
    const frame = convert(kvAt(g), dtype);
    for (let a = 0; a < runs; a++) {
      for (let k = 0; k < hd; k++) window.cache[(a * P + (g % P)) * hd + k] = frame[a * hd + k];
    }
  }
  return window;
}

/** The bytes of a window's cache, to compare bit for bit (NaN payloads and -0 included). */
const bytesOf = (w: AssembledWindow | KvData) => {
  const c = 'cache' in w ? w.cache : w;
  return Buffer.from(c.buffer, c.byteOffset, c.byteLength).toString('hex');
};

/** `cache` copied into a larger buffer at `offset` elements (`spare` more after it): the same values at a byte offset. */
function atOffset<T extends KvData>(cache: T, offset: number, spare = 3): T {
  const n = cache.length + offset + spare;
  const wider = (cache instanceof Uint16Array ? new Uint16Array(n) : new Float32Array(n)) as T;
  wider.set(cache as never, offset);
  return wider.subarray(offset, offset + cache.length) as T;
}

describe('planCacheRead: the segments it picks', () => {
  it('of two segments over the same frames, reads the later chunk, however they are listed', () => {
    const older = { chunk: 1, firstFrame: 4, frames: 4 }, newer = { chunk: 2, firstFrame: 4, frames: 4 };
    for (const listing of [[older, newer], [newer, older]]) {
      const plan = planCacheRead(listing, 4, { endFrame: 8 });
      expect(plan.segments).toEqual([newer]);
    }
  });

  it('reads nothing before the job\'s first frame, even when older segments are listed', () => {
    const segs: SegmentInfo[] = [{ chunk: 0, firstFrame: 0, frames: 4 }, { chunk: 1, firstFrame: 4, frames: 4 }];
    const plan = planCacheRead(segs, 12, { endFrame: 8, startFrame: 4 });
    expect(plan).toEqual({ segments: [segs[1]], skipFrames: 0, frames: 4, firstFrame: 4 });
  });

  it('refuses a segment of no frames where the newest should be', () => {
    const segs: SegmentInfo[] = [{ chunk: 0, firstFrame: 0, frames: 4 }, { chunk: 1, firstFrame: 4, frames: 4 }, { chunk: 2, firstFrame: 8, frames: 0 }];
    expect(() => planCacheRead(segs, 12, { endFrame: 8 })).toThrow(CacheGapError);
  });
});

describe('empty and allocated windows', () => {
  it('hold fp16 bits or floats as asked, floats by default', () => {
    expect(emptyWindow().cache).toBeInstanceOf(Float32Array);
    expect(emptyWindow('float32').cache).toBeInstanceOf(Float32Array);
    expect(emptyWindow('float16', 7)).toEqual({ cache: new Uint16Array(0), frames: 0, firstFrame: 7 });
    const shape = { runs: 3, headDim: 2 };
    expect(allocateWindow(4, 9, shape, 'float16')).toEqual({ cache: new Uint16Array(24), frames: 4, firstFrame: 9 });
    expect(allocateWindow(4, 9, shape, 'float32')).toEqual({ cache: new Float32Array(24), frames: 4, firstFrame: 9 });
  });
});

describe('assembleAttentionCache: what it refuses', () => {
  const shape = { runs: 2, headDim: 3 };
  const plan = planCacheRead([{ chunk: 0, firstFrame: 0, frames: 2 }, { chunk: 1, firstFrame: 2, frames: 2 }], 4, { endFrame: 4 });

  it('one array per planned segment', () => {
    expect(() => assembleAttentionCache(plan, [floatsOf(0, 2, shape)], shape)).toThrow(new RangeError('assembleAttentionCache: 1 arrays for 2 planned segments'));
  });

  it('a segment of the wrong size, naming both sizes', () => {
    const error = (() => {
      try {
        assembleAttentionCache(plan, [floatsOf(0, 2, shape), new Float32Array(5)], shape);
      } catch (err) {
        return err;
      }
    })();
    expect(error).toBeInstanceOf(SegmentMismatchError);
    expect(error).toMatchObject({ field: 'shape', expected: '12 floats', actual: '5 floats' });
  });
});

describe('placeFrames', () => {
  const shape = { runs: 2, headDim: 4 };

  it('places nothing, and checks nothing, for no frames', () => {
    const window = allocateWindow(2, 0, shape, 'float32');
    expect(() => placeFrames(window, new Float32Array(0), 5, 0, 0, shape)).not.toThrow();
    expect(window.cache.every((v) => v === 0)).toBe(true);
  });

  it('refuses more frames than the window has slots', () => {
    const window = allocateWindow(2, 0, shape, 'float32');
    expect(() => placeFrames(window, floatsOf(0, 3, shape), 0, 3, 0, shape)).toThrow(new RangeError('placeFrames: 3 frames into a window of 2'));
  });

  it('refuses a source that ends before the frames asked for', () => {
    const window = allocateWindow(4, 0, shape, 'float32');
    // Frames 1 and 2 need 3 frames of 8 values; 20 values hold two and a half.
    expect(() => placeFrames(window, floatsOf(0, 3, shape).subarray(0, 20), 1, 2, 0, shape)).toThrow(new RangeError('placeFrames: source too short'));
  });

  // Every pair of kinds, an odd head_dim (no 32-bit words in an fp16 run) and an even one, sources
  // and windows at byte offsets that are and are not 4-aligned.
  const cases = [];
  for (const from of ['float16', 'float32'] as const) {
    for (const into of ['float16', 'float32'] as const) {
      for (const hd of [3, 4]) {
        for (const [srcOffset, dstOffset] of [[0, 0], [1, 0], [0, 1], [2, 2]]) cases.push({ from, into, hd, srcOffset, dstOffset });
      }
    }
  }
  it.each(cases)('$from into $into, head_dim $hd, source at +$srcOffset, window at +$dstOffset: each frame in its slot', ({ from, into, hd, srcOffset, dstOffset }) => {
    const shape = { runs: 3, headDim: hd };
    const P = 5;
    const src = atOffset(kvOf(20, 6, shape, from), srcOffset); // global frames 20..25
    const window = { ...allocateWindow(P, 19, shape, into), cache: atOffset(allocateWindow(P, 19, shape, into).cache, dstOffset) };
    placeFrames(window, src, 1, 4, 21, shape); // frames 21..24 into slots 1..4 (slot 0, frame 20's, stays zero)
    const want = ringOf((g) => kvOf(g, 1, shape, from), 20, P, shape, into);
    for (let a = 0; a < shape.runs; a++) want.cache.fill(0, a * P * hd, (a * P + 20 % P) * hd + hd);
    expect(bytesOf(window)).toBe(bytesOf(want));
  });

  describe('with runs of at least 4096 values (copied whole)', () => {
    const long = { runs: 2, headDim: 4096 };
    it.each(['float16', 'float32'] as const)('%s: each run of each frame into its slot, and no frame past the last asked for', (dtype) => {
      const src = kvOf(0, 4, long, dtype);
      const window = allocateWindow(3, 1, long, dtype);
      placeFrames(window, src, 1, 2, 1, long); // source frames 1 and 2 (of 4) into slots 1 and 2; slot 0 stays zero
      const want = ringOf((g) => kvOf(g, 1, long, dtype), 0, 3, long, dtype);
      for (let a = 0; a < long.runs; a++) want.cache.fill(0, a * 3 * 4096, (a * 3 + 1) * 4096);
      expect(bytesOf(window)).toBe(bytesOf(want));
    });

    it('widens fp16 into floats', () => {
      const src = kvOf(0, 2, long, 'float16');
      const window = allocateWindow(2, 0, long, 'float32');
      placeFrames(window, src, 0, 2, 0, long);
      expect(bytesOf(window)).toBe(bytesOf(ringOf((g) => kvOf(g, 1, long, 'float16'), 0, 2, long, 'float32')));
    });
  });
});

describe('advanceCacheWindow: a window carried chunk to chunk is the window read cold', () => {
  /** The cold window before frame `end`: the last min(end - first, P_max) frames, slot by slot. */
  const cold = (end: number, first: number, pMax: number, shape: AttentionShape, kvDtype: CacheDtype, dtype: CacheDtype) => {
    const P = Math.min(end - first, pMax);
    return ringOf((g) => kvOf(g, 1, shape, kvDtype), end - P, P, shape, dtype);
  };

  const runs = [];
  for (const dtype of ['float16', 'float32'] as const) {
    for (const kvDtype of ['float16', 'float32'] as const) {
      for (const shape of [{ runs: 3, headDim: 3 }, { runs: 2, headDim: 4 }, { runs: 1, headDim: 12 }]) {
        runs.push({ dtype, kvDtype, shape, first: 2, given: 3, l: 4, pMax: 10 });
        runs.push({ dtype, kvDtype, shape, first: 0, given: 0, l: 5, pMax: 3 });
      }
    }
  }
  it.each(runs)('$kvDtype K/V into a $dtype window of $shape.runs runs of $shape.headDim, P_max $pMax, chunks of $l', ({ dtype, kvDtype, shape, first, given, l, pMax }) => {
    let window = cold(first + given, first, pMax, shape, kvDtype, dtype);
    let end = first + given;
    for (let step = 0; step < 9; step++) {
      const before = window;
      window = advanceCacheWindow(window, kvOf(end, l, shape, kvDtype), end, l, pMax, shape);
      end += l;
      const want = cold(end, first, pMax, shape, kvDtype, dtype);
      expect([window.frames, window.firstFrame]).toEqual([want.frames, want.firstFrame]);
      expect(bytesOf(window)).toBe(bytesOf(want));
      // A full window takes the new frames where it is.
      if (before.frames === pMax) expect(window.cache).toBe(before.cache);
    }
  });

  it.each([
    { dtype: 'float16' as const, shape: { runs: 2, headDim: 3 }, offset: 1 },
    { dtype: 'float16' as const, shape: { runs: 2, headDim: 4 }, offset: 2 },
    { dtype: 'float16' as const, shape: { runs: 2, headDim: 4 }, offset: 1 }, // whole 32-bit words per run, but not 4-aligned
    { dtype: 'float32' as const, shape: { runs: 2, headDim: 3 }, offset: 1 },
    { dtype: 'float16' as const, shape: { runs: 1, headDim: 6 }, offset: 6 },
    { dtype: 'float32' as const, shape: { runs: 1, headDim: 6 }, offset: 6 },
  ])('grows a $dtype window held at +$offset values of a larger buffer ($shape.runs runs)', ({ dtype, shape, offset }) => {
    const start = cold(6, 0, 10, shape, dtype, dtype);
    // Room for P_max frames after it: a frames-first window still grows into a buffer of its own.
    let window: AssembledWindow = { ...start, cache: atOffset(start.cache, offset, 10 * 6) };
    let end = 6;
    for (let step = 0; step < 3; step++) {
      window = advanceCacheWindow(window, kvOf(end, 3, shape, dtype), end, 3, 10, shape);
      end += 3;
      expect(bytesOf(window)).toBe(bytesOf(cold(end, 0, 10, shape, dtype, dtype)));
    }
  });
});
