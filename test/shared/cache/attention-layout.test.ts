import { describe, expect, it } from 'vitest';
import { assembleAttentionCache, assembleCache, planCacheRead } from '../../../shared/cache/assemble.js';

describe('assembleAttentionCache', () => {
  it('equals assembling frames-first and moving the frame axis inwards', () => {
    const runs = 6, hd = 4, frameFloats = runs * hd;
    // Prefix of 2 frames, then chunks of 3 frames; window of 7 frames -> the oldest is sliced.
    const segs = [
      { chunk: -1, firstFrame: 0, frames: 2 },
      { chunk: 0, firstFrame: 2, frames: 3 },
      { chunk: 1, firstFrame: 5, frames: 3 },
    ];
    const plan = planCacheRead(segs, 7, { endFrame: 8 });
    expect(plan.skipFrames).toBe(1);
    const data = plan.segments.map((s) => Float32Array.from({ length: s.frames * frameFloats }, (_, i) => s.chunk * 1000 + i));
    const framesFirst = assembleCache(plan, data, frameFloats).cache;
    const got = assembleAttentionCache(plan, data, { runs, headDim: hd });
    const P = plan.frames;
    expect(got.frames).toBe(7);
    for (let p = 0; p < P; p++) {
      for (let a = 0; a < runs; a++) {
        for (let k = 0; k < hd; k++) expect(got.cache[(a * P + p) * hd + k]).toBe(framesFirst[(p * runs + a) * hd + k]);
      }
    }
  });

  it('rejects a segment of the wrong size', () => {
    const plan = planCacheRead([{ chunk: 0, firstFrame: 0, frames: 2 }], 4, { endFrame: 2 });
    expect(() => assembleAttentionCache(plan, [new Float32Array(5)], { runs: 2, headDim: 2 })).toThrow(/floats/);
  });
});
