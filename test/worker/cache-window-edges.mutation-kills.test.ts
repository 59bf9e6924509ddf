import { createHash } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { standInManifest } from '../../bench/standin-model.js';
import { putSegment, readWindow, segmentKey, verifySegments, writeSegment, type CacheDeps } from '../../gpu-worker/cache-window.js';
import { HAND_OVER_BYTES } from '../../shared/cache/hash-thread.js';
import { decodeSegmentHeader, PREFIX_CHUNK } from '../../shared/cache/segment.js';
import { firstFrameOf, jobPlan } from '../../gpu-worker/job-plan.js';
import { SegmentWrites } from '../../gpu-worker/segment-io.js';
import { inputFrameKey, jobPrefix } from '../../shared/keys.js';
import { parseManifest } from '../../shared/model/manifest.js';
import { continuation, failureOf, FaultyStore, hex, repairsOf, objectOf, ringOf, setup, TINY, TinyModel } from './cache-window-fixtures.js';
import { localStack, MANIFEST, submitJob, tempDir } from './fixtures.js';

describe('readWindow: edges of the wait for a newest segment', () => {
  it('waits 10 s by default for one stored in the background', async () => {
    const s = await setup({ chunks: 4 });
    const newest = segmentKey(s.job, 2);
    const bytes = readFileSync(s.file(newest));
    rmSync(s.file(newest));
    setTimeout(() => void s.stack.store.put(newest, bytes), 250);
    s.model.calls = [];
    const end = firstFrameOf(s.plan, 3);
    const deps = { ...s.deps, segmentWrites: new SegmentWrites(), deferSegmentBytes: 1 };
    expect(hex(await readWindow(deps, s.job, s.plan, end))).toBe(hex(ringOf(s.m, s.plan, s.kvs, end)));
    expect(s.model.calls).toHaveLength(0);
  });

  it('gives up on a segment that did not come in time without reading it again', async () => {
    const s = await setup({ chunks: 4 });
    const newest = segmentKey(s.job, 2);
    rmSync(s.file(newest));
    const reads: number[] = [];
    const store = new FaultyStore(s.stack.store, { readRange: (k, start) => { if (k === newest) reads.push(start); return undefined; } });
    await readWindow({ ...s.deps, store, segmentWrites: new SegmentWrites(), deferSegmentBytes: 1, segmentWaitMs: 300 }, s.job, s.plan, firstFrameOf(s.plan, 3));
    expect(reads).toEqual([0]); // one probe of its header, then rebuilt (the rebuild writes, never reads it)
    expect(store.heads).toBeGreaterThan(0);
  });

  it('sizes a segment of float K/V at 4 bytes a value', async () => {
    // A model whose K/V are floats: segments written straight (no model call), 2 frames of 32 values.
    const m = parseManifest({ ...standInManifest(MANIFEST, TINY, {}, 'layers'), kv_dtype: 'float32', cache_dtype: 'float32' });
    const stack = localStack(tempDir('cache-window-f32-'));
    const job = await submitJob(stack, m, { frames: 8, label: 1, guidance: 2 });
    const plan = jobPlan(job, m);
    const deps: CacheDeps = { store: stack.store, model: new TinyModel(m) };
    for (let j = 0; j < 3; j++) {
      const kv = Float32Array.from({ length: 2 * 32 }, (_, i) => j * 1000 + i + 0.25);
      await writeSegment(deps, job, plan, j, firstFrameOf(plan, j), kv);
    }
    const newest = segmentKey(job, 2);
    const file = path.join(stack.store.root, ...newest.split('/'));
    const bytes = readFileSync(file);
    rmSync(file);
    setTimeout(() => void stack.store.put(newest, bytes), 250);
    // 2 frames * 32 values * 4 bytes = 256: stored in the background, so waited for (nothing to rebuild it from here).
    const window = await readWindow({ ...deps, segmentWrites: new SegmentWrites(), deferSegmentBytes: 256, segmentWaitMs: 3000 }, job, plan, 6);
    // Frames 1..5; run 0 of frame 5 (chunk 2's second frame) in slot 0, of frame 4 (its first) in slot 4.
    expect(Array.from(window.cache.subarray(0, 2))).toEqual([2032.25, 2033.25]);
    expect(Array.from(window.cache.subarray(8, 10))).toEqual([2000.25, 2001.25]);
  });
});

describe('lineage: a window that starts at a job\'s first frame', () => {
  it('reads nothing of the video the job continues', async () => {
    // P_max 4, chunks of 2: a child's window before its frame start + 4 holds only its own frames.
    const m = parseManifest({ ...standInManifest(MANIFEST, { ...TINY, pMax: 4 }, {}, 'layers'), context_t: 50 });
    const s = await setup({ chunks: 2, init: 0 });
    const child = await continuation({ ...s, m }, s.job, jobPlan(s.job, m), 4, 'child4');
    const deps: CacheDeps = { ...s.deps, model: new TinyModel(m) };
    const kvs = new Map();
    for (let j = 0; j < 2; j++) {
      const kv = Uint16Array.from({ length: 2 * 32 }, (_, i) => 0x3c00 + j * 64 + i);
      await putSegment(s.stack.store, { modelSha: m.onnx_sha256, kvDtype: 'float16', frameShape: [1, 2, 2, 2, 4] }, child.job, j, firstFrameOf(child.plan, j), kv);
      kvs.set(j, kv);
    }
    const store = new FaultyStore(s.stack.store);
    const window = await readWindow({ ...deps, store }, child.job, child.plan, child.plan.startFrame + 4);
    expect(store.gets.filter((k) => k === `${jobPrefix(s.job.tenant, s.job.id)}job.json`)).toEqual([]);
    expect(hex(window)).toBe(hex(ringOf(m, { ...child.plan, startFrame: child.plan.startFrame, initFrames: 0 }, kvs, child.plan.startFrame + 4)));
  });
});

describe('starting frames', () => {
  it('names every starting frame that is gone', async () => {
    const s = await setup({ init: 3, chunks: 2 });
    rmSync(s.file(segmentKey(s.job, PREFIX_CHUNK)));
    rmSync(s.file(inputFrameKey(s.job.tenant, s.job.id, 0)));
    rmSync(s.file(inputFrameKey(s.job.tenant, s.job.id, 2)));
    const err = await failureOf(readWindow(s.deps, s.job, s.plan, firstFrameOf(s.plan, 1)));
    expect(err.message).toBe(`cache segment ${segmentKey(s.job, PREFIX_CHUNK)} is missing, and the frames to rebuild it from are gone (${inputFrameKey(s.job.tenant, s.job.id, 0)}, ${inputFrameKey(s.job.tenant, s.job.id, 2)})`);
  });

  it('verifySegments checks the prefix segment too', async () => {
    const s = await setup({ init: 2, chunks: 3 });
    const key = segmentKey(s.job, PREFIX_CHUNK);
    const before = readFileSync(s.file(key));
    rmSync(s.file(key));
    await verifySegments(s.deps, s.job, s.plan);
    expect(readFileSync(s.file(key)).equals(before)).toBe(true);
    expect(await repairsOf(s)).toEqual([[objectOf(s.job, key), 'input', false]]);
  });
});

describe('putSegment with the K/V handed over', () => {
  it('hashes a large one on the hashing thread: the caller\'s K/V is detached, the segment stored with each frame\'s digest', async () => {
    const s = await setup({ init: 0, chunks: 2, stored: 0 });
    const frameShape = [1, 2, 1, 64, 128] as const; // 32 KiB a frame
    const frames = Math.ceil(HAND_OVER_BYTES / (64 * 128 * 2 * 2)) + 1;
    const kv = Uint16Array.from({ length: frames * 2 * 64 * 128 }, (_, i) => 0x3c00 | (i % 1021));
    const copy = Buffer.from(Uint16Array.from(kv).buffer);
    await putSegment(s.stack.store, { modelSha: s.m.onnx_sha256, kvDtype: 'float16', frameShape }, s.job, 0, 0, kv, { handOver: true });
    expect(kv.byteLength).toBe(0); // given up: the hashing thread had it
    const stored = readFileSync(s.file(segmentKey(s.job, 0)));
    const meta = decodeSegmentHeader(stored);
    const frameBytes = copy.byteLength / frames;
    expect(meta.frameShas!.map((d) => d.toString('hex'))).toEqual(
      Array.from({ length: frames }, (_, f) => createHash('sha256').update(copy.subarray(f * frameBytes, (f + 1) * frameBytes)).digest('hex')));
    expect(stored.subarray(stored.byteLength - copy.byteLength).equals(copy)).toBe(true);
  });
});
