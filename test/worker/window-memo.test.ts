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

describe('WindowMemo budget edges', () => {
  it('keeps windows that fill the budget exactly, and one as large as the whole budget', () => {
    const memo = new WindowMemo(2 * 16);
    memo.put('t/a', window(0, 4));
    memo.put('t/b', window(0, 4)); // 32 bytes of 32
    expect(memo.take('t/a', 4)).toBeDefined();
    expect(memo.take('t/b', 4)).toBeDefined();
    memo.put('t/whole', window(0, 4, 8)); // 32 bytes: exactly the budget
    expect(memo.take('t/whole', 4)).toBeDefined();
  });

  it('counts a replaced window once: putting a job again frees its old bytes', () => {
    const memo = new WindowMemo(2 * 16);
    memo.put('t/a', window(0, 4));
    memo.put('t/a', window(4, 4)); // replaces, still 16 bytes in use
    memo.put('t/b', window(0, 4)); // 32: both fit
    expect(memo.take('t/a', 8)).toBeDefined();
    expect(memo.take('t/b', 4)).toBeDefined();
  });

  it('frees the bytes of a taken window, so later windows fit', () => {
    const memo = new WindowMemo(2 * 16);
    memo.put('t/a', window(0, 4));
    memo.put('t/b', window(0, 4));
    expect(memo.take('t/a', 4)).toBeDefined();
    memo.put('t/c', window(0, 4)); // fits in a's freed bytes: b stays
    expect(memo.take('t/b', 4)).toBeDefined();
    expect(memo.take('t/c', 4)).toBeDefined();
  });

  it('evicts only as many of the oldest windows as needed', () => {
    const memo = new WindowMemo(3 * 16);
    memo.put('t/a', window(0, 4));
    memo.put('t/b', window(0, 4));
    memo.put('t/c', window(0, 4));
    memo.put('t/d', window(0, 4, 8)); // 32 bytes: a and b must go, c stays
    expect(memo.take('t/a', 4)).toBeUndefined();
    expect(memo.take('t/b', 4)).toBeUndefined();
    expect(memo.take('t/c', 4)).toBeDefined();
    expect(memo.take('t/d', 4)).toBeDefined();
  });

  it('keeps nothing with a zero budget except empty windows', () => {
    const memo = new WindowMemo(0);
    memo.put('t/a', window(0, 4));
    expect(memo.take('t/a', 4)).toBeUndefined();
  });
});
