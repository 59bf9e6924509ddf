// The window memo's budget arithmetic and bookkeeping without the model: window sizes per dtype,
// the default budget from the machine's memory (or the container's limit), the one loud warning,
// clear(), and a window too large to keep.
import * as os from 'node:os';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { log } from '../../gpu-worker/log.js';
import { defaultWindowBudget, WindowMemo, windowBytes } from '../../gpu-worker/window-memo.js';
import { parseManifest, type Manifest } from '../../shared/model/manifest.js';
import { MODEL_DIR } from './fixtures.js';

const BASE = parseManifest(JSON.parse(readFileSync(path.join(MODEL_DIR, 'manifest.json'), 'utf8')));
/** A model with distinct primes for every factor, so a wrong factor shows. */
const m = (over: Partial<Manifest> = {}): Manifest => ({ ...BASE, p_max: 3, depth: 5, tokens_per_frame: 7, width: 11, chunk_frames: 13, cache_dtype: 'float32', kv_dtype: 'float32', ...over });
const window = (floats: number, frames = 1) => ({ cache: new Float32Array(floats), frames, firstFrame: 0 });

afterEach(() => { vi.restoreAllMocks(); });

describe('windowBytes', () => {
  it('is P_max x depth x (k, v) x rows x tokens x width values of the cache dtype', () => {
    expect(windowBytes(m(), 1)).toBe(3 * 5 * 2 * 1 * 7 * 11 * 4);
    expect(windowBytes(m(), 2)).toBe(3 * 5 * 2 * 2 * 7 * 11 * 4);
    expect(windowBytes(m({ cache_dtype: 'float16' }), 2)).toBe(3 * 5 * 2 * 2 * 7 * 11 * 2);
  });
});

describe('defaultWindowBudget', () => {
  const chunkKv = (bytes: number) => 13 * 5 * 2 * 2 * 7 * 11 * bytes;

  it('is half the memory less a guided window and two chunks of K/V', () => {
    const memory = 10_000_001;
    expect(defaultWindowBudget(m(), memory)).toBe(Math.floor(memory / 2 - windowBytes(m(), 2) - 2 * chunkKv(4)));
    expect(defaultWindowBudget(m({ kv_dtype: 'float16' }), memory)).toBe(Math.floor(memory / 2 - windowBytes(m(), 2) - 2 * chunkKv(2)));
  });

  it('is 0, not negative, on a machine too small', () => {
    expect(defaultWindowBudget(m(), 1000)).toBe(0);
  });

  it('takes the container\'s memory limit when there is one below the machine\'s memory', () => {
    vi.spyOn(process, 'constrainedMemory').mockReturnValue(2 ** 30);
    expect(defaultWindowBudget(m())).toBe(defaultWindowBudget(m(), 2 ** 30));
  });

  it('takes the machine\'s memory when the limit is absent (0 or less), above it, or cannot be asked', () => {
    const machine = defaultWindowBudget(m(), os.totalmem());
    const spy = vi.spyOn(process, 'constrainedMemory');
    spy.mockReturnValue(0);
    expect(defaultWindowBudget(m())).toBe(machine);
    spy.mockReturnValue(-1);
    expect(defaultWindowBudget(m())).toBe(machine);
    spy.mockReturnValue(os.totalmem() * 4);
    expect(defaultWindowBudget(m())).toBe(machine);
    spy.mockReturnValue(os.totalmem());
    expect(defaultWindowBudget(m())).toBe(machine);
    spy.mockRestore();
    const own = Object.getOwnPropertyDescriptor(process, 'constrainedMemory');
    Object.defineProperty(process, 'constrainedMemory', { value: undefined, configurable: true, writable: true });
    try {
      expect(defaultWindowBudget(m())).toBe(machine);
    } finally {
      if (own) Object.defineProperty(process, 'constrainedMemory', own);
      else delete (process as { constrainedMemory?: unknown }).constrainedMemory;
    }
  });
});

describe('WindowMemo.keeps', () => {
  it('keeps a window up to exactly the budget, and says once, with the sizes and the fix, when it cannot', () => {
    const errors = vi.spyOn(log, 'error').mockImplementation(() => {});
    const memo = new WindowMemo(100);
    expect(memo.keeps(100)).toBe(true);
    expect(errors).not.toHaveBeenCalled();
    expect(memo.keeps(101, { job: 'j1' })).toBe(false);
    expect(memo.keeps(500)).toBe(false);
    expect(errors).toHaveBeenCalledTimes(1);
    expect(errors.mock.calls[0][0]).toBe('cache window too large for the window memo: every chunk of such jobs reads its window from the store');
    expect(errors.mock.calls[0][1]).toEqual({ job: 'j1', window_bytes: 101, memo_bytes: 100, fix: 'give the worker more memory or set WINDOW_MEMO_BYTES' });
  });
});

describe('WindowMemo bookkeeping', () => {
  it('clear drops every window and frees their bytes', () => {
    const memo = new WindowMemo(32);
    memo.put('t/a', window(4));
    memo.put('t/b', window(4));
    memo.clear();
    expect(memo.take('t/a', 1)).toBeUndefined();
    memo.put('t/c', window(4));
    memo.put('t/d', window(4));
    expect(memo.take('t/c', 1)).toBeDefined(); // 32 bytes of 32: nothing was left counted
    expect(memo.take('t/d', 1)).toBeDefined();
  });

  it('a window too large to keep evicts nothing else', () => {
    const memo = new WindowMemo(32);
    memo.put('t/a', window(4));
    memo.put('t/big', window(16));
    expect(memo.take('t/big', 1)).toBeUndefined();
    expect(memo.take('t/a', 1)).toBeDefined();
  });

  it('a window too large to keep still replaces the job\'s older one', () => {
    const memo = new WindowMemo(32);
    memo.put('t/a', window(4));
    memo.put('t/a', window(16));
    expect(memo.take('t/a', 1)).toBeUndefined();
  });
});
