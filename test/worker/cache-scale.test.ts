import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { loadBaseManifest, StandInModel, standInManifest, type Geometry } from '../../bench/standin-model.js';
import { log } from '../../gpu-worker/log.js';
import { ChunkWorker } from '../../gpu-worker/worker.js';
import { defaultWindowBudget, WindowMemo, windowBytes } from '../../gpu-worker/window-memo.js';
import { HAND_OVER_BYTES } from '../../shared/cache/hash-thread.js';
import { readJob } from '../../shared/jobs/job-store.js';
import { kvFrameBytes } from '../../shared/model/manifest.js';
import { cacheSegmentKey, frameKey } from '../../shared/keys.js';
import type { ObjectStore } from '../../shared/store/object-store.js';
import { localStack, MODEL_DIR, submitJob, tempDir } from './fixtures.js';
import { WIDE, WIDE_MANIFEST } from './standin.js';

// A small network of the paper's kind through the stand-in graph: fp16 K/V, and a cache the graph
// takes in fp16, so the window is kept and filled as fp16 bits on every path.
const TINY: Geometry = { name: 'tiny', depth: 2, heads: 2, headDim: 4, tokensPerFrame: 3, chunkFrames: 2, pMax: 5 };
const CHUNKS = 6;
const base = await loadBaseManifest(MODEL_DIR);
const manifest = standInManifest(base, TINY, { cache_dtype: 'float16' });
// The same network taking its window as one input per layer and K/V (frames inside each head run).
const layered = standInManifest(base, TINY, { cache_dtype: 'float16' }, 'layers');
const assets = path.resolve(import.meta.dirname, '../../scripts/assets');
const initPngs = [0, 1, 2].map((i) => readFileSync(path.join(assets, `demo-init-${i}.png`)));

type Wrap = (s: ObjectStore) => ObjectStore;

async function runJob(opts: { memo?: number; defer?: number; wrap?: Wrap; manifest?: typeof manifest } = {}) {
  const m = opts.manifest ?? manifest;
  const model = new StandInModel(m, 0);
  const stack = localStack(tempDir());
  const job = await submitJob(stack, m, { id: 'scale', frames: CHUNKS * TINY.chunkFrames, steps: 3, seed: 4, initPngs });
  const store = opts.wrap ? opts.wrap(stack.store) : stack.store;
  const worker = new ChunkWorker({ ...stack, store, model, waitSec: 0.2, windowMemoBytes: opts.memo, deferSegmentBytes: opts.defer });
  while ((await worker.processNext()) === 'computed');
  await worker.close();
  const bytes = async (key: string) => (await stack.store.get(key))?.body;
  const frames = await Promise.all(Array.from({ length: CHUNKS * TINY.chunkFrames }, (_, i) => bytes(frameKey(job.tenant, job.id, Math.floor(i / 2), i % 2))));
  const segments = await Promise.all(['prefix' as const, ...Array.from({ length: CHUNKS - 1 }, (_, k) => k)].map((k) => bytes(cacheSegmentKey(job.tenant, job.id, k))));
  return { job: (await readJob(stack.store, job.tenant, job.id))!.job, frames, segments, stack };
}

/** Counts ranged reads of cache segments. */
const countingReads = (counter: { n: number; keys: Set<string> }): Wrap => (store) => new Proxy(store, {
  get(target, prop, receiver) {
    if (prop !== 'readRange') return Reflect.get(target, prop, receiver);
    return (key: string, start: number, into: Uint8Array) => {
      if (key.includes('/cache/')) {
        counter.n++;
        counter.keys.add(key);
      }
      return target.readRange(key, start, into);
    };
  },
});

describe('the cache path with an fp16 window (stand-in graph)', () => {
  it.each([
    { layout: 'frames first', m: manifest },
    { layout: 'per layer', m: layered },
  ])('gives the same frames and segments whether each chunk keeps its window or reads it back (window $layout)', async ({ m }) => {
    const warmReads = { n: 0, keys: new Set<string>() }, coldReads = { n: 0, keys: new Set<string>() };
    const warm = await runJob({ wrap: countingReads(warmReads), manifest: m });
    const cold = await runJob({ memo: 0, wrap: countingReads(coldReads), manifest: m });
    expect(warm.job.status).toBe('succeeded');
    expect(cold.job.status).toBe('succeeded');
    for (const [i, f] of warm.frames.entries()) expect(f!.equals(cold.frames[i]!), `frame ${i}`).toBe(true);
    for (const [i, s] of warm.segments.entries()) expect(s!.equals(cold.segments[i]!), `segment ${i}`).toBe(true);
    // Every chunk after the first advanced the kept window: the only reads are the finish's one pass
    // over each segment (finalize verifies them), far fewer than reading every chunk's window back.
    expect(warmReads.keys.size).toBe(warm.segments.length);
    expect(warmReads.n).toBeLessThan(coldReads.n / 2);
    expect(coldReads.n).toBeGreaterThan(CHUNKS);
  });

  it('stores segments in the background with the same result, and the next chunk does not wait for one', async () => {
    const inline = await runJob();
    // Segment 1's put is held until chunk 2 has made its first model call.
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    let heldKey = '';
    const gate: Wrap = (store) => new Proxy(store, {
      get(target, prop, receiver) {
        if (prop !== 'put') return Reflect.get(target, prop, receiver);
        return async (key: string, body: never, options: never) => {
          if (key.endsWith('/cache/000001.kv')) { heldKey = key; await held; }
          return target.put(key, body, options);
        };
      },
    });
    const step = StandInModel.prototype.step;
    let callsWhileHeld = 0;
    const spy = vi.spyOn(StandInModel.prototype, 'step').mockImplementation(function (this: StandInModel, ...args: Parameters<typeof step>) {
      if (heldKey) { callsWhileHeld++; if (callsWhileHeld === 4) release(); }
      return step.apply(this, args);
    });
    try {
      const deferred = await runJob({ defer: 0, wrap: gate });
      expect(callsWhileHeld).toBeGreaterThanOrEqual(4); // chunk 2's denoising ran while segment 1 was on its way
      expect(deferred.job.status).toBe('succeeded');
      for (const [i, f] of inline.frames.entries()) expect(f!.equals(deferred.frames[i]!), `frame ${i}`).toBe(true);
      for (const [i, s] of inline.segments.entries()) expect(s!.equals(deferred.segments[i]!), `segment ${i}`).toBe(true);
    } finally {
      spy.mockRestore();
    }
  });
});

// Chunks of K/V of 4 MiB and more: a background segment write hands its K/V to the hashing thread.
const wide = WIDE_MANIFEST;

describe('segments hashed on the hashing thread', () => {
  it('are the bytes of segments hashed on the event loop, and the video the same', async () => {
    expect(WIDE.chunkFrames * kvFrameBytes(wide, 1)).toBeGreaterThanOrEqual(HAND_OVER_BYTES);
    const inline = await runJob({ manifest: wide });
    const handed = await runJob({ manifest: wide, defer: 0 });
    expect(handed.job.status).toBe('succeeded');
    // Stored right the first time: no segment failed its check and was rebuilt (a rebuild would
    // hide a wrong digest behind the same final bytes).
    expect(handed.job.repairs ?? []).toEqual([]);
    expect(inline.job.repairs ?? []).toEqual([]);
    for (const [i, f] of inline.frames.entries()) expect(f!.equals(handed.frames[i]!), `frame ${i}`).toBe(true);
    for (const [i, s] of inline.segments.entries()) expect(s!.equals(handed.segments[i]!), `segment ${i}`).toBe(true);
  });
});

describe('the window memo budget', () => {
  it('follows the manifest and the machine, and says once, loudly, when a window cannot be kept', () => {
    const xl = standInManifest(manifest, { name: 'xl2', depth: 28, heads: 16, headDim: 72, tokensPerFrame: 256, chunkFrames: 8, pMax: 25 }, { cache_dtype: 'float16' });
    expect(windowBytes(xl, 1)).toBe(25 * 28 * 2 * 256 * 1152 * 2); // 826 MB
    expect(defaultWindowBudget(xl, 16 * 2 ** 30)).toBeGreaterThan(3 * windowBytes(xl, 2)); // a 16 GiB g5.xlarge
    expect(defaultWindowBudget(xl, 4 * 2 ** 30)).toBe(0); // too small a machine: keeps none
    const errors = vi.spyOn(log, 'error').mockImplementation(() => {});
    try {
      const memo = new WindowMemo(windowBytes(xl, 1));
      expect(memo.keeps(windowBytes(xl, 1))).toBe(true);
      expect(memo.keeps(windowBytes(xl, 2))).toBe(false);
      expect(memo.keeps(windowBytes(xl, 2))).toBe(false);
      expect(errors).toHaveBeenCalledTimes(1);
      expect(errors.mock.calls[0][1]).toMatchObject({ window_bytes: windowBytes(xl, 2), memo_bytes: windowBytes(xl, 1) });
    } finally {
      errors.mockRestore();
    }
  });
});
