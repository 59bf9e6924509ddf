import { describe, expect, it } from 'vitest';
import { cleanCopyKey, decodeCleanCopy, encodeCleanCopy, f16Precision } from '../../gpu-worker/clean-copy.js';

const frames = f16Precision(Float32Array.from({ length: 2 * 12 }, (_, i) => Math.sin(i) * 0.9));
const meta = { job: 'job1', chunk: 3, frames: 2 };
const expectOf = { ...meta, floats: frames.length };

describe('clean copy codec', () => {
  it('gives back exactly the fp16-rounded floats it was given', () => {
    const back = decodeCleanCopy(encodeCleanCopy(frames, meta), expectOf);
    expect(back).toEqual(frames);
    // Rounding twice changes nothing: what the chunk step keeps is what the copy holds.
    expect(f16Precision(frames)).toEqual(frames);
  });

  it('refuses a flipped byte anywhere, a truncated copy, and another chunk\'s or job\'s copy', () => {
    const bytes = encodeCleanCopy(frames, meta);
    for (const at of [0, 9, 14, bytes.length - 40, bytes.length - 1]) {
      const bad = Buffer.from(bytes);
      bad[at] ^= 0x01;
      expect(decodeCleanCopy(bad, expectOf)).toBeNull();
    }
    expect(decodeCleanCopy(bytes.subarray(0, bytes.length - 2), expectOf)).toBeNull();
    expect(decodeCleanCopy(encodeCleanCopy(frames, { ...meta, chunk: 4 }), expectOf)).toBeNull();
    expect(decodeCleanCopy(encodeCleanCopy(frames, { ...meta, job: 'job2' }), expectOf)).toBeNull();
    expect(decodeCleanCopy(bytes, { ...expectOf, floats: frames.length + 12, frames: 3 })).toBeNull();
  });

  it('lives beside the frames, outside the frames/ listing', () => {
    expect(cleanCopyKey({ tenant: 't1', id: 'job1' }, 3)).toBe('jobs/t1/job1/clean/000003.f16');
    expect(() => cleanCopyKey({ tenant: 't1', id: 'job1' }, -1)).toThrow(RangeError);
  });
});
