import { describe, expect, it } from 'vitest';
import { WindowMemo } from '../../gpu-worker/window-memo.js';

const window = (firstFrame: number, frames: number, floats = 4) => ({ cache: new Float32Array(floats), frames, firstFrame });

describe('WindowMemo', () => {
  it('gives a job its window only where the next chunk starts, and only once', () => {
    const memo = new WindowMemo();
    const w = window(4, 12);
    memo.put('t/a', w);
    expect(memo.take('t/a', 12)).toBeUndefined(); // ends at 16, not 12: stale, and dropped
    expect(memo.take('t/a', 16)).toBeUndefined();
    memo.put('t/a', w);
    expect(memo.take('t/a', 16)).toBe(w);
    expect(memo.take('t/a', 16)).toBeUndefined(); // taken: a failed chunk cannot leave it half-advanced
  });

  it('evicts the least recently stored windows beyond its byte budget', () => {
    const memo = new WindowMemo(2 * 16); // two windows of 4 floats
    memo.put('t/a', window(0, 4));
    memo.put('t/b', window(0, 4));
    memo.put('t/c', window(0, 4));
    expect(memo.take('t/a', 4)).toBeUndefined();
    expect(memo.take('t/b', 4)).toBeDefined();
    expect(memo.take('t/c', 4)).toBeDefined();
    memo.put('t/big', window(0, 4, 100)); // larger than the whole budget: not kept
    expect(memo.take('t/big', 4)).toBeUndefined();
  });
});
