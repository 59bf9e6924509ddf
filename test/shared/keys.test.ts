import { describe, expect, it } from 'vitest';
import {
  InvalidIdError,
  activeJobKey,
  cacheSegmentKey,
  chunkFramesKey,
  frameKey,
  inputFrameKey,
  jobKey,
  previewGifKey,
  tenantPrefix,
  videoKey,
} from '../../shared/keys.js';
import { assertValidKey } from '../../shared/store/object-store.js';

describe('storage keys', () => {
  it('follow the layout of the design', () => {
    expect(jobKey('t1', 'j1')).toBe('jobs/t1/j1/job.json');
    expect(inputFrameKey('t1', 'j1', 0)).toBe('jobs/t1/j1/input/000.png');
    expect(cacheSegmentKey('t1', 'j1', 12)).toBe('jobs/t1/j1/cache/000012.kv');
    expect(cacheSegmentKey('t1', 'j1', 'prefix')).toBe('jobs/t1/j1/cache/prefix.kv');
    expect(chunkFramesKey('t1', 'j1', 3)).toBe('jobs/t1/j1/frames/000003.png');
    expect(frameKey('t1', 'j1', 3, 7)).toBe('jobs/t1/j1/frames/000003-007.png');
    expect(videoKey('t1', 'j1')).toBe('jobs/t1/j1/output/video.mp4');
    expect(previewGifKey('t1', 'j1')).toBe('jobs/t1/j1/output/preview.gif');
    expect(tenantPrefix('t1')).toBe('jobs/t1/');
    expect(activeJobKey('t1', 'j1')).toBe('active/t1/j1');
  });

  it('are valid object-store keys and sort in chunk order', () => {
    const keys = [10, 2, 100].map((k) => cacheSegmentKey('t', 'j', k));
    keys.forEach(assertValidKey);
    expect([...keys].sort()).toEqual([2, 10, 100].map((k) => cacheSegmentKey('t', 'j', k)));
  });

  it('reject unsafe ids and out-of-range indices', () => {
    for (const bad of ['', '..', 'a/b', '-x', 'a.b', 'x'.repeat(65)]) {
      expect(() => jobKey(bad, 'j')).toThrow(InvalidIdError);
      expect(() => jobKey('t', bad)).toThrow(InvalidIdError);
    }
    expect(() => cacheSegmentKey('t', 'j', -1)).toThrow(RangeError);
    expect(() => cacheSegmentKey('t', 'j', 1.5)).toThrow(RangeError);
    expect(() => inputFrameKey('t', 'j', 1000)).toThrow(RangeError);
    expect(() => chunkFramesKey('t', 'j', 0, '../x')).toThrow(RangeError);
  });
});
