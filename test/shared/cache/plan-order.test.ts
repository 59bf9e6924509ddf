import { describe, expect, it } from 'vitest';
import { planCacheRead, type SegmentInfo } from '../../../shared/cache/assemble.js';
import { CacheGapError } from '../../../shared/cache/errors.js';
import { PREFIX_CHUNK } from '../../../shared/cache/segment.js';

// Frames line up in every case below; only the chunk numbers betray a segment that was re-keyed or
// duplicated, which only the chunk-order check in planCacheRead can see.
describe('planCacheRead: chunk order must follow frame order', () => {
  it('accepts segments whose chunk numbers rise with their frames (the control)', () => {
    const segs: SegmentInfo[] = [
      { chunk: PREFIX_CHUNK, firstFrame: 0, frames: 2 },
      { chunk: 0, firstFrame: 2, frames: 4 },
      { chunk: 1, firstFrame: 6, frames: 4 },
    ];
    expect(planCacheRead(segs, 10, { endFrame: 10 }).segments.map((s) => s.chunk)).toEqual([PREFIX_CHUNK, 0, 1]);
  });

  it('rejects two chunks whose numbers run against their frames', () => {
    const swapped: SegmentInfo[] = [
      { chunk: 1, firstFrame: 0, frames: 4 },
      { chunk: 0, firstFrame: 4, frames: 4 },
    ];
    expect(() => planCacheRead(swapped, 8, { endFrame: 8 })).toThrow(CacheGapError);
  });

  it('rejects one chunk number used for two consecutive frame ranges', () => {
    const duplicated: SegmentInfo[] = [
      { chunk: 0, firstFrame: 0, frames: 4 },
      { chunk: 0, firstFrame: 4, frames: 4 },
    ];
    expect(() => planCacheRead(duplicated, 8, { endFrame: 8 })).toThrow(CacheGapError);
  });

  it('rejects a chunk segment placed before the starting frames', () => {
    const misplaced: SegmentInfo[] = [
      { chunk: 0, firstFrame: 0, frames: 3 },
      { chunk: PREFIX_CHUNK, firstFrame: 3, frames: 3 },
    ];
    expect(() => planCacheRead(misplaced, 6, { endFrame: 6 })).toThrow(CacheGapError);
  });
});
