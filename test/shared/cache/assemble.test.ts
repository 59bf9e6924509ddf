import { describe, expect, it } from 'vitest';
import { assembleAttentionCache, planCacheRead, type AssembledWindow, type SegmentInfo } from '../../../shared/cache/assemble.js';
import { CacheGapError } from '../../../shared/cache/errors.js';
import { decodeSegment, encodeSegment, PREFIX_CHUNK } from '../../../shared/cache/segment.js';

const KV = 6; // floats per frame in these tests: frame f holds f*100 + 0..5
const shape = { runs: 1, headDim: KV };
const frameData = (first: number, frames: number) =>
  new Float32Array(frames * KV).map((_, i) => (first + Math.floor(i / KV)) * 100 + (i % KV));

/** A prefix of 3 starting frames, then `chunks` chunks of 4 frames each. */
function job(chunks: number): SegmentInfo[] {
  const segs: SegmentInfo[] = [{ chunk: PREFIX_CHUNK, firstFrame: 0, frames: 3 }];
  for (let k = 0; k < chunks; k++) segs.push({ chunk: k, firstFrame: 3 + 4 * k, frames: 4 });
  return segs;
}

function build(segs: SegmentInfo[], pMax: number, opts = {}) {
  const plan = planCacheRead(segs, pMax, opts);
  const assembled = assembleAttentionCache(plan, plan.segments.map((s) => frameData(s.firstFrame, s.frames)), shape);
  return { plan, ...assembled };
}

/** Lane `lane` of the window's p-th frame, oldest first (global frame g sits in ring slot g mod P). */
const laneOf = (w: AssembledWindow, p: number, lane = 0) => w.cache[((w.firstFrame + p) % w.frames) * KV + lane];
/** The global frame index each frame of the window came from, oldest first. */
const framesOf = (w: AssembledWindow) => Array.from({ length: w.frames }, (_, p) => laneOf(w, p) / 100);

describe('planCacheRead + assembleAttentionCache', () => {
  it('reads only the newest segments when they exactly fill P_max', () => {
    const { plan, ...window } = build(job(6), 12);
    expect(plan.segments.map((s) => s.chunk)).toEqual([3, 4, 5]);
    expect(plan.skipFrames).toBe(0);
    expect([window.frames, window.firstFrame]).toEqual([12, 15]);
    expect(framesOf(window)).toEqual([15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26]);
    expect(laneOf(window, 1, 5)).toBe(1605); // whole frames, inner layout untouched
  });

  it('slices the oldest segment by whole frames when P_max falls inside it', () => {
    const { plan, ...window } = build(job(6), 10);
    expect(plan.segments.map((s) => s.chunk)).toEqual([3, 4, 5]);
    expect(plan.skipFrames).toBe(2);
    expect(window.frames).toBe(10);
    expect(framesOf(window)).toEqual([17, 18, 19, 20, 21, 22, 23, 24, 25, 26]);
  });

  it('uses everything (prefix included) while the video is shorter than P_max', () => {
    const { plan, ...window } = build(job(2), 12, { endFrame: 11 });
    expect(plan.segments.map((s) => s.chunk)).toEqual([-1, 0, 1]);
    expect([window.frames, window.firstFrame]).toEqual([11, 0]);
    expect(framesOf(window)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });

  it('ignores order of the listing and damage outside the window', () => {
    const segs = job(6).filter((s) => s.chunk !== 0).reverse(); // chunk 0 lost long ago
    expect(planCacheRead(segs, 12).segments.map((s) => s.chunk)).toEqual([3, 4, 5]);
  });

  it('gives an empty cache for the first chunk of a job without starting frames', () => {
    const { frames, cache, firstFrame } = build([], 12, { endFrame: 0 });
    expect([frames, cache.length, firstFrame]).toEqual([0, 0, 0]);
  });

  it('throws CacheGapError for a missing segment inside the window', () => {
    const segs = job(6).filter((s) => s.chunk !== 4);
    expect(() => planCacheRead(segs, 12)).toThrow(CacheGapError);
  });

  it('throws CacheGapError when the newest segment is missing (endFrame given)', () => {
    expect(() => planCacheRead(job(5), 12, { endFrame: 27 })).toThrow(CacheGapError);
    expect(() => planCacheRead([], 12, { endFrame: 3 })).toThrow(CacheGapError);
  });

  it('throws CacheGapError for a missing oldest segment of a short video, and overlaps', () => {
    expect(() => planCacheRead(job(2).slice(1), 12)).toThrow(CacheGapError);
    const dup = [...job(3), { chunk: 3, firstFrame: 9, frames: 4 }];
    expect(() => planCacheRead(dup, 12)).toThrow(CacheGapError);
  });

  it('refuses data that does not match the planned frame count', () => {
    const plan = planCacheRead(job(3), 12);
    expect(() => assembleAttentionCache(plan, plan.segments.map(() => new Float32Array(KV)), shape)).toThrow();
  });

  it('assembles decoded segments end to end', () => {
    const sha = '0f'.repeat(32);
    const kvShape = [1, 2, 1, 1, 3] as const; // depth, kv, B, N, width: 6 floats per frame
    const stored = job(4).map((s) => ({
      ...s,
      bytes: encodeSegment(frameData(s.firstFrame, s.frames), { modelSha: sha, job: 'j', chunk: s.chunk, firstFrame: s.firstFrame, shape: [s.frames, ...kvShape] }, 'float32'),
    }));
    const plan = planCacheRead(stored, 12, { endFrame: 19 });
    const decoded = plan.segments.map((s) => decodeSegment(s.bytes, { modelSha: sha, job: 'j', chunk: s.chunk }).data);
    const window = assembleAttentionCache(plan, decoded, shape);
    expect(window.frames).toBe(12);
    expect(plan.segments.map((s) => s.chunk)).toEqual([1, 2, 3]); // prefix and chunk 0 are never read
    expect(framesOf(window)).toEqual([7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]);
  });
});
