import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import 'aws-sdk-client-mock-vitest/extend';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  attentionShape,
  cacheWritePass,
  defersSegment,
  putSegment,
  readWindow,
  segmentKey,
  stepAfter,
  verifySegments,
  writeSegment,
} from '../../gpu-worker/cache-window.js';
import { writeCleanCopy } from '../../gpu-worker/clean-copy.js';
import { ChunkFailure } from '../../gpu-worker/errors.js';
import { firstFrameOf, jobPlan, type JobPlan } from '../../gpu-worker/job-plan.js';
import { SegmentWrites } from '../../gpu-worker/segment-io.js';
import { emptyWindow } from '../../shared/cache/assemble.js';
import { PREFIX_CHUNK } from '../../shared/cache/segment.js';
import { createJob } from '../../shared/jobs/job-store.js';
import { newJob } from '../../shared/jobs/lifecycle.js';
import { frameKey, inputFrameKey, jobPrefix } from '../../shared/keys.js';
import { frameFloats, parseManifest } from '../../shared/model/manifest.js';
import { contextFrames } from '../../shared/sampler/context.js';
import type { Job } from '../../shared/schemas/job.js';
import { S3Store } from '../../shared/store/s3-store.js';
import {
  continuation, f16s, failureOf, FaultyStore, flip, hex, L, manifestOf, objectOf, pseudoFrames, repairsOf, ringOf, setup, TinyModel,
} from './cache-window-fixtures.js';

// The cache window of a chunk read back from segments in the real local store, with no model (a
// stand-in step graph of a tiny geometry: cache-window-fixtures.ts). Both cache layouts, fp16 and
// float windows, one and two batch rows.

describe('readWindow: the window read cold is the window carried in memory, and the segments\' frames in their slots', () => {
  const cases = [];
  for (const layout of ['layers', 'frames'] as const) {
    for (const cacheDtype of ['float16', 'float32'] as const) {
      cases.push({ layout, cacheDtype, init: 3, guided: true }, { layout, cacheDtype, init: 0, guided: false });
    }
  }
  it.each(cases)('$layout first, $cacheDtype window, $init starting frames, guided $guided', async ({ layout, cacheDtype, init, guided }) => {
    const s = await setup({ layout, cacheDtype, init, guided, chunks: 6 });
    expect(s.plan.rows).toBe(guided ? 2 : 1);
    expect(s.windows).toHaveLength(5);
    for (const [j, { carried, cold }] of s.windows.entries()) {
      const end = firstFrameOf(s.plan, j);
      expect(cold.cache).toBeInstanceOf(cacheDtype === 'float16' ? Uint16Array : Float32Array);
      expect([cold.frames, cold.firstFrame]).toEqual([Math.min(end, 5), Math.max(0, end - 5)]);
      expect([carried.frames, carried.firstFrame]).toEqual([cold.frames, cold.firstFrame]);
      expect(hex(cold)).toBe(hex(carried));
      expect(hex(cold)).toBe(hex(ringOf(s.m, s.plan, s.kvs, end)));
    }
    // The window of the chunk after the last stored one, read twice: the same bytes, nothing rebuilt.
    const end = firstFrameOf(s.plan, 5);
    expect(hex(await readWindow(s.deps, s.job, s.plan, end))).toBe(hex(ringOf(s.m, s.plan, s.kvs, end)));
    expect(await repairsOf(s)).toBeUndefined();
  });

  it('gives the frames-first window its K/V frame by frame, as segments store them', async () => {
    const s = await setup({ layout: 'frames', chunks: 4 });
    expect(attentionShape(s.m, s.plan)).toEqual({ runs: 1, headDim: 1 * 2 * 2 * 2 * 4 });
    const layers = await setup({ layout: 'layers', chunks: 2 });
    expect(attentionShape(layers.m, layers.plan)).toEqual({ runs: 1 * 2 * 2 * 2 * 2, headDim: 2 });
    const window = await readWindow(s.deps, s.job, s.plan, 9);
    const kv2 = f16s(s.kvs.get(2)!), frameLen = 32;
    expect(Array.from(window.cache.subarray((8 % 5) * frameLen, (8 % 5 + 1) * frameLen))).toEqual(Array.from(kv2.subarray(frameLen, 2 * frameLen)));
  });
});

describe('readWindow: a damaged or missing segment is rebuilt to its very bytes', () => {
  it.each([
    { what: 'a flipped payload byte', layout: 'layers' as const, chunk: 1, damage: 'flip' },
    { what: 'a flipped header byte', layout: 'frames' as const, chunk: 2, damage: 'header' },
    { what: 'a deleted segment', layout: 'frames' as const, chunk: 1, damage: 'delete' },
    { what: 'a deleted prefix', layout: 'layers' as const, chunk: PREFIX_CHUNK, damage: 'delete' },
  ])('$what ($layout first)', async ({ layout, chunk, damage }) => {
    // The window of chunk 4 (frames 6..10: chunk 1 sliced, 2 and 3), or of chunk 1 (the prefix and chunk 0).
    const s = await setup({ layout, chunks: 5 });
    const key = segmentKey(s.job, chunk);
    const before = readFileSync(s.file(key));
    if (damage === 'delete') rmSync(s.file(key));
    else flip(s.file(key), damage === 'header' ? 20 : before.length - 3);
    s.model.calls = [];
    const end = firstFrameOf(s.plan, chunk === PREFIX_CHUNK ? 1 : 4);
    const window = await readWindow(s.deps, s.job, s.plan, end);
    expect(hex(window)).toBe(hex(ringOf(s.m, s.plan, s.kvs, end)));
    expect(readFileSync(s.file(key)).equals(before)).toBe(true);
    expect(s.model.calls).toHaveLength(1); // one cache-write pass, after the window read for it
    expect(await repairsOf(s)).toEqual([[objectOf(s.job, key), chunk === PREFIX_CHUNK ? 'input' : 'clean_copy', false]]);
  });

  it('rebuilds the older of two damaged segments first, so the newer one sees it repaired', async () => {
    const s = await setup({ layout: 'layers', chunks: 5 });
    const keys = [segmentKey(s.job, 2), segmentKey(s.job, 3)];
    const before = keys.map((k) => readFileSync(s.file(k)));
    for (const k of keys) rmSync(s.file(k));
    const end = firstFrameOf(s.plan, 4);
    expect(hex(await readWindow(s.deps, s.job, s.plan, end))).toBe(hex(ringOf(s.m, s.plan, s.kvs, end)));
    keys.forEach((k, i) => expect(readFileSync(s.file(k)).equals(before[i])).toBe(true));
    expect(await repairsOf(s)).toEqual(keys.map((k) => [objectOf(s.job, k), 'clean_copy', false]));
  });

  it('falls back to the 8-bit frames when the clean copy is gone too, and says so', async () => {
    const s = await setup({ layout: 'layers', chunks: 4 });
    rmSync(s.file(segmentKey(s.job, 1)));
    rmSync(s.file(`${jobPrefix(s.job.tenant, s.job.id)}clean/000001.f16`));
    await readWindow(s.deps, s.job, s.plan, firstFrameOf(s.plan, 3));
    expect(await repairsOf(s)).toEqual([[objectOf(s.job, segmentKey(s.job, 1)), 'png', true]]);
  });

  it('makes a job\'s last chunk\'s segment on first use without calling it a repair', async () => {
    const s = await setup({ layout: 'layers', chunks: 4, stored: 3 });
    // Chunk 3 is the last: its frames and copy exist (made here), its segment never did.
    const frames = pseudoFrames(s.m, L, 103);
    await writeCleanCopy(s.stack.store, s.job, 3, frames, L);
    const kv = await cacheWritePass(s.model, s.job, s.plan, frames, 3, firstFrameOf(s.plan, 3), await readWindow(s.deps, s.job, s.plan, firstFrameOf(s.plan, 3)));
    s.kvs.set(3, kv);
    const end = firstFrameOf(s.plan, 4);
    expect(hex(await readWindow(s.deps, s.job, s.plan, end))).toBe(hex(ringOf(s.m, s.plan, s.kvs, end)));
    expect(readFileSync(s.file(segmentKey(s.job, 3))).length).toBeGreaterThan(0);
    expect(await repairsOf(s)).toBeUndefined();
  });

  it('a missing segment that is not the last one is a repair', async () => {
    const s = await setup({ layout: 'layers', chunks: 4, stored: 3 });
    rmSync(s.file(segmentKey(s.job, 2)));
    await readWindow(s.deps, s.job, s.plan, firstFrameOf(s.plan, 3));
    expect(await repairsOf(s)).toEqual([[objectOf(s.job, segmentKey(s.job, 2)), 'clean_copy', false]]);
  });
});

describe('readWindow: what cannot be rebuilt fails the job with the reason', () => {
  it('a missing segment whose frames are gone: cache_missing', async () => {
    const s = await setup({ chunks: 4 });
    rmSync(s.file(segmentKey(s.job, 1)));
    rmSync(s.file(`${jobPrefix(s.job.tenant, s.job.id)}clean/000001.f16`));
    rmSync(s.file(frameKey(s.job.tenant, s.job.id, 1, 0)));
    const err = await failureOf(readWindow(s.deps, s.job, s.plan, firstFrameOf(s.plan, 3)));
    expect(err).toBeInstanceOf(ChunkFailure);
    expect(err.code).toBe('cache_missing');
    expect(err.message).toBe(`cache segment ${segmentKey(s.job, 1)} is missing, and the frames to rebuild it from are gone (frame ${frameKey(s.job.tenant, s.job.id, 1, 0)} and the clean copy of chunk 1 are gone)`);
    expect(err.cause).toBeInstanceOf(ChunkFailure);
  });

  it('a damaged segment whose frames are gone: cache_corrupt, naming the damage', async () => {
    const s = await setup({ chunks: 4 });
    const key = segmentKey(s.job, 2);
    flip(s.file(key), readFileSync(s.file(key)).length - 1);
    rmSync(s.file(`${jobPrefix(s.job.tenant, s.job.id)}clean/000002.f16`));
    rmSync(s.file(frameKey(s.job.tenant, s.job.id, 2, 1)));
    const err = await failureOf(readWindow(s.deps, s.job, s.plan, firstFrameOf(s.plan, 3)));
    expect(err.code).toBe('cache_corrupt');
    expect(err.message.startsWith(`cache segment ${key} is damaged (`)).toBe(true);
    expect(err.message).toContain(`), and the frames to rebuild it from are gone (frame ${frameKey(s.job.tenant, s.job.id, 2, 1)} and the clean copy of chunk 2 are gone)`);
  });

  it('a missing prefix whose starting frames are gone: cache_missing, naming them', async () => {
    const s = await setup({ init: 2, chunks: 3 });
    rmSync(s.file(segmentKey(s.job, PREFIX_CHUNK)));
    rmSync(s.file(inputFrameKey(s.job.tenant, s.job.id, 1)));
    const err = await failureOf(readWindow(s.deps, s.job, s.plan, firstFrameOf(s.plan, 1)));
    expect(err.code).toBe('cache_missing');
    expect(err.message).toBe(`cache segment ${segmentKey(s.job, PREFIX_CHUNK)} is missing, and the frames to rebuild it from are gone (${inputFrameKey(s.job.tenant, s.job.id, 1)})`);
  });

  it('a segment made by another model: model_mismatch, never rebuilt', async () => {
    const s = await setup({ chunks: 3 });
    const key = segmentKey(s.job, 1);
    rmSync(s.file(key));
    const other = { modelSha: 'ab'.repeat(32), kvDtype: s.m.kv_dtype, frameShape: [1, 2, 2, 2, 4] as const };
    await putSegment(s.stack.store, other, s.job, 1, firstFrameOf(s.plan, 1), s.kvs.get(1)!);
    const err = await failureOf(readWindow(s.deps, s.job, s.plan, firstFrameOf(s.plan, 2)));
    expect(err.code).toBe('model_mismatch');
    expect(err.message).toBe(`cache segment ${key} was made by another model (${'ab'.repeat(32)}); this worker serves ${s.m.onnx_sha256}`);
  });

  it('other errors of the store pass through', async () => {
    const s = await setup({ chunks: 2 });
    const broken = new FaultyStore(s.stack.store, { readRange: () => { throw new Error('disk on fire'); } });
    await expect(readWindow({ ...s.deps, store: broken }, s.job, s.plan, firstFrameOf(s.plan, 1))).rejects.toThrow('disk on fire');
  });
});


describe('readWindow: reads that fail once', () => {
  it('reads a segment cut short in transit once more, and keeps it', async () => {
    const s = await setup({ chunks: 4 });
    const key = segmentKey(s.job, 1);
    let cut = 0;
    const store = new FaultyStore(s.stack.store, {
      readRange: (k, start, into) => {
        if (k !== key || start === 0 || cut++ > 0) return undefined;
        return s.stack.store.readRange(k, start, into).then((got) => got && { ...got, bytes: got.bytes - 1 });
      },
    });
    const end = firstFrameOf(s.plan, 3);
    s.model.calls = [];
    expect(hex(await readWindow({ ...s.deps, store }, s.job, s.plan, end))).toBe(hex(ringOf(s.m, s.plan, s.kvs, end)));
    expect(cut).toBeGreaterThan(1);
    expect(s.model.calls).toHaveLength(0);
    expect(await repairsOf(s)).toBeUndefined();
  });

  it('waits for a segment this worker is still writing', async () => {
    const s = await setup({ chunks: 4 });
    const key = segmentKey(s.job, 2);
    const bytes = readFileSync(s.file(key));
    rmSync(s.file(key));
    const segmentWrites = new SegmentWrites();
    segmentWrites.start(key, async () => {
      await new Promise((r) => setTimeout(r, 50));
      await s.stack.store.put(key, bytes);
    });
    s.model.calls = [];
    const end = firstFrameOf(s.plan, 3);
    expect(hex(await readWindow({ ...s.deps, segmentWrites }, s.job, s.plan, end))).toBe(hex(ringOf(s.m, s.plan, s.kvs, end)));
    expect(s.model.calls).toHaveLength(0);
  });

  it('waits for the newest segment stored in the background by another worker, and only the newest', async () => {
    const s = await setup({ chunks: 4 });
    const newest = segmentKey(s.job, 2);
    const bytes = readFileSync(s.file(newest));
    rmSync(s.file(newest));
    const store = new FaultyStore(s.stack.store);
    const deps = { ...s.deps, store, segmentWrites: new SegmentWrites(), deferSegmentBytes: 1, segmentWaitMs: 3000 };
    setTimeout(() => void s.stack.store.put(newest, bytes), 250);
    s.model.calls = [];
    const end = firstFrameOf(s.plan, 3);
    expect(hex(await readWindow(deps, s.job, s.plan, end))).toBe(hex(ringOf(s.m, s.plan, s.kvs, end)));
    expect(s.model.calls).toHaveLength(0);
    expect(store.heads).toBeGreaterThan(0);
    // An older one is rebuilt at once: no polling.
    rmSync(s.file(segmentKey(s.job, 1)));
    store.heads = 0;
    await readWindow(deps, s.job, s.plan, end);
    expect(store.heads).toBe(0);
    expect(s.model.calls).toHaveLength(1);
  });

  it('rebuilds the newest segment once the wait is over, or at once when such segments are not stored in the background', async () => {
    const s = await setup({ chunks: 4 });
    const newest = segmentKey(s.job, 2);
    const before = readFileSync(s.file(newest));
    const store = new FaultyStore(s.stack.store);
    // Segment 2 holds 2 frames of 1 * 2 * 2 * 2 * 4 fp16 values: 128 bytes.
    for (const [waits, deps] of [
      [true, { ...s.deps, store, segmentWrites: new SegmentWrites(), deferSegmentBytes: 128, segmentWaitMs: 300 }],
      [false, { ...s.deps, store, segmentWrites: new SegmentWrites(), deferSegmentBytes: 129, segmentWaitMs: 300 }],
      [false, { ...s.deps, store, deferSegmentBytes: 1, segmentWaitMs: 300 }],
    ] as const) {
      rmSync(s.file(newest));
      store.heads = 0;
      const end = firstFrameOf(s.plan, 3);
      expect(hex(await readWindow(deps, s.job, s.plan, end))).toBe(hex(ringOf(s.m, s.plan, s.kvs, end)));
      expect(readFileSync(s.file(newest)).equals(before)).toBe(true);
      expect(store.heads > 0).toBe(waits);
    }
  });
});

describe('readWindow: segments that come back wrong', () => {
  it('waits once for a newest segment that is listed but does not read, then rebuilds it', async () => {
    const s = await setup({ chunks: 4 });
    const newest = segmentKey(s.job, 2);
    const before = readFileSync(s.file(newest));
    const store: FaultyStore = new FaultyStore(s.stack.store, { readRange: (k) => (k === newest && store.heads < 3 ? Promise.resolve(null) : undefined) });
    const deps = { ...s.deps, store, segmentWrites: new SegmentWrites(), deferSegmentBytes: 1, segmentWaitMs: 3000 };
    s.model.calls = [];
    const end = firstFrameOf(s.plan, 3);
    expect(hex(await readWindow(deps, s.job, s.plan, end))).toBe(hex(ringOf(s.m, s.plan, s.kvs, end)));
    expect(store.heads).toBe(1);
    expect(s.model.calls).toHaveLength(1);
    expect(readFileSync(s.file(newest)).equals(before)).toBe(true);
  });

  it('a damaged last segment is a repair', async () => {
    const s = await setup({ chunks: 4, stored: 4 });
    const last = segmentKey(s.job, 3);
    flip(s.file(last), readFileSync(s.file(last)).length - 1);
    await readWindow(s.deps, s.job, s.plan, firstFrameOf(s.plan, 4));
    expect(await repairsOf(s)).toEqual([[objectOf(s.job, last), 'clean_copy', false]]);
  });

  it('a damaged frame to rebuild from fails the job as it is', async () => {
    const s = await setup({ chunks: 4 });
    rmSync(s.file(segmentKey(s.job, 1)));
    rmSync(s.file(`${jobPrefix(s.job.tenant, s.job.id)}clean/000001.f16`));
    writeFileSync(s.file(frameKey(s.job.tenant, s.job.id, 1, 0)), 'not a png');
    const err = await failureOf(readWindow(s.deps, s.job, s.plan, firstFrameOf(s.plan, 3)));
    expect(err.code).toBe('frames_corrupt');
  });
});

describe('putSegment on S3 (mocked SDK)', () => {
  const s3 = mockClient(S3Client);
  const store = new S3Store({ client: new S3Client({ region: 'us-east-1' }), bucket: 'b' });
  const job = { id: 'j1', tenant: 'tenant1' } as Job;
  const model = { modelSha: 'cd'.repeat(32), kvDtype: 'float16' as const, frameShape: [1, 2, 1, 2, 4] as const };
  beforeEach(() => s3.reset());

  it('writes once, binary, tagged to expire with the cache; a rebuild replaces only the damaged ETag', async () => {
    s3.on(PutObjectCommand).resolves({ ETag: '"e"' });
    await putSegment(store, model, job, 2, 7, new Uint16Array(2 * 16).fill(0x3c00));
    expect(s3).toHaveReceivedCommandWith(PutObjectCommand, {
      Key: segmentKey(job, 2), IfNoneMatch: '*', ContentType: 'application/octet-stream', Tagging: 'ca2vdm-cache=expire',
    });
    s3.reset();
    s3.on(PutObjectCommand).resolves({ ETag: '"f"' });
    await putSegment(store, model, job, 2, 7, new Uint16Array(2 * 16).fill(0x3c00), { replace: '"e"' });
    expect(s3).toHaveReceivedCommandWith(PutObjectCommand, { IfMatch: '"e"' });
    expect(s3.commandCalls(PutObjectCommand)[0].args[0].input.IfNoneMatch).toBeUndefined();
  });
});

describe('defersSegment', () => {
  it('only with background writes, and only from the configured size on', () => {
    const deps = {};
    expect(defersSegment(deps, 1e12)).toBe(false);
    expect(defersSegment({ ...deps, segmentWrites: new SegmentWrites() }, 1e12)).toBe(false);
    expect(defersSegment({ ...deps, segmentWrites: new SegmentWrites(), deferSegmentBytes: 100 }, 100)).toBe(true);
    expect(defersSegment({ ...deps, segmentWrites: new SegmentWrites(), deferSegmentBytes: 100 }, 99)).toBe(false);
    expect(defersSegment({ ...deps, deferSegmentBytes: 100 }, 100)).toBe(false);
  });
});

describe('continuations: the window reaches into the videos a job continues', () => {
  it.each(['layers', 'frames'] as const)('reads the parent\'s frames before the fork (%s first), and makes the parent\'s last segment on first use', async (layout) => {
    const s = await setup({ layout, init: 2, chunks: 4, stored: 3 });
    // The parent's last chunk (3) was never stored: make its frames as the worker would have.
    const frames = pseudoFrames(s.m, L, 103);
    await writeCleanCopy(s.stack.store, s.job, 3, frames, L);
    s.kvs.set(3, await cacheWritePass(s.model, s.job, s.plan, frames, 3, firstFrameOf(s.plan, 3), await readWindow(s.deps, s.job, s.plan, firstFrameOf(s.plan, 3))));

    // Continue the whole video (8 frames): the child's chunk 0 starts at global frame 10.
    const child = await continuation(s, s.job, s.plan, 4 * L, 'child1');
    expect(child.plan.startFrame).toBe(10);
    const window = await readWindow(s.deps, child.job, child.plan, child.plan.startFrame);
    expect(hex(window)).toBe(hex(ringOf(s.m, s.plan, s.kvs, 10)));
    expect(await repairsOf(s)).toBeUndefined();

    // The child's own chunk 0, then a window of both videos' frames.
    const own = pseudoFrames(s.m, L, 200);
    await writeCleanCopy(s.stack.store, child.job, 0, own, L);
    const kv = await cacheWritePass(s.model, child.job, child.plan, own, 0, 10, window);
    await writeSegment(s.deps, child.job, child.plan, 0, 10, kv);
    const mixed = await readWindow(s.deps, child.job, child.plan, 12);
    const both = new Map(s.kvs);
    const { runs, headDim } = attentionShape(s.m, s.plan);
    const frameLen = runs * headDim;
    const want = ringOf(s.m, { ...s.plan, startFrame: 2 }, new Map([...both, [4, kv]]), 12); // chunk "4" of the lineage: frames 10, 11
    expect(hex(mixed)).toBe(hex(want));
    expect(f16s(kv).length).toBe(2 * frameLen);

    // A fork at frame 4 of the parent: its window holds the parent's frames 1..5 only.
    const fork = await continuation(s, s.job, s.plan, 2 * L, 'fork1');
    expect(hex(await readWindow(s.deps, fork.job, fork.plan, fork.plan.startFrame))).toBe(hex(ringOf(s.m, s.plan, s.kvs, 6)));
  });

  it('reads through a continuation of a continuation', async () => {
    const s = await setup({ layout: 'layers', init: 1, chunks: 2, stored: 2 });
    const mid = await continuation(s, s.job, s.plan, 2, 'mid1');
    const frames = pseudoFrames(s.m, L, 300);
    await writeCleanCopy(s.stack.store, mid.job, 0, frames, L);
    const kv = await cacheWritePass(s.model, mid.job, mid.plan, frames, 0, 3, await readWindow(s.deps, mid.job, mid.plan, 3));
    await writeSegment(s.deps, mid.job, mid.plan, 0, 3, kv);
    const leaf = await continuation(s, mid.job, mid.plan, 2, 'leaf1');
    expect(leaf.plan.startFrame).toBe(5);
    // Frames 0 (prefix), 1-2 (root chunk 0), 3-4 (mid chunk 0).
    const want = ringOf(s.m, { ...s.plan, startFrame: 1 }, new Map([[PREFIX_CHUNK, s.kvs.get(PREFIX_CHUNK)!], [0, s.kvs.get(0)!], [1, kv]]), 5);
    expect(hex(await readWindow(s.deps, leaf.job, leaf.plan, 5))).toBe(hex(want));
  });

  it('fails when the video a job continues is gone, and on a lineage that never ends', async () => {
    const s = await setup({ chunks: 2 });
    const orphan = await continuation(s, { ...s.job, id: 'gone1' }, s.plan, 2, 'orphan1');
    const err = await failureOf(readWindow(s.deps, orphan.job, orphan.plan, orphan.plan.startFrame));
    expect(err.code).toBe('parent_missing');
    expect(err.message).toBe('video gone1, which job orphan1 continues, is gone');

    // A record that continues itself (damaged): the walk stops after MAX_LINEAGE videos.
    const loop = newJob({
      id: 'loop1', tenant: s.job.tenant, manifest: s.m, chunkFrames: L, now: new Date(),
      parent: { id: 'loop1', frames: 2, start_frame: 4, chunk_offset: 1 },
      request: { ...s.job.request, frames: 4, init_frames: { count: 0, keys: [] } },
    });
    await createJob(s.stack.store, loop);
    const store = new FaultyStore(s.stack.store);
    const looped = await failureOf(readWindow({ ...s.deps, store }, loop, jobPlan(loop, s.m), 4));
    expect(looped.code).toBe('bad_request');
    expect(looped.message).toBe('job loop1 continues more than 1000 videos');
    expect(store.gets.filter((k) => k === `${jobPrefix(s.job.tenant, 'loop1')}job.json`)).toHaveLength(1000);
  });

  it('reads a parent\'s shorter last chunk, made on first use from its copy', async () => {
    // 2 starting frames, then chunks of 2, 2, 2 and 1 frames (7 in all); the last one never stored.
    const s = await setup({ layout: 'layers', init: 2, chunks: 4, frames: 7, stored: 3 });
    const frames = pseudoFrames(s.m, 1, 103);
    await writeCleanCopy(s.stack.store, s.job, 3, frames, 1);
    s.kvs.set(3, await cacheWritePass(s.model, s.job, s.plan, frames, 3, 8, await readWindow(s.deps, s.job, s.plan, 8)));
    const child = await continuation(s, s.job, s.plan, 7, 'child7');
    expect(child.plan.startFrame).toBe(9);
    expect(hex(await readWindow(s.deps, child.job, child.plan, 9))).toBe(hex(ringOf(s.m, s.plan, s.kvs, 9)));
    expect(await repairsOf(s)).toBeUndefined();
  });
});

describe('verifySegments', () => {
  it('rebuilds every damaged segment of a finished job, prefix included, to its very bytes', async () => {
    const s = await setup({ layout: 'frames', cacheDtype: 'float32', init: 2, chunks: 5 });
    const keys = [segmentKey(s.job, PREFIX_CHUNK), segmentKey(s.job, 1), segmentKey(s.job, 3)];
    const before = keys.map((k) => readFileSync(s.file(k)));
    rmSync(s.file(keys[0]));
    flip(s.file(keys[1]), before[1].length - 2);
    rmSync(s.file(keys[2]));
    await verifySegments(s.deps, s.job, s.plan);
    keys.forEach((k, i) => expect(readFileSync(s.file(k)).equals(before[i])).toBe(true));
    expect(await repairsOf(s)).toEqual([[objectOf(s.job, keys[0]), 'input', false], [objectOf(s.job, keys[1]), 'clean_copy', false], [objectOf(s.job, keys[2]), 'clean_copy', false]]);
    // The last chunk's segment is not one to verify (nothing came after it).
    expect(await s.stack.store.head(segmentKey(s.job, 4))).toBeNull();
  });

  it('reads every stored segment whole and leaves intact ones alone', async () => {
    const s = await setup({ layout: 'layers', init: 0, chunks: 4 });
    const read: string[] = [];
    const store = new FaultyStore(s.stack.store, { readRange: (k) => { read.push(k); return undefined; } });
    s.model.calls = [];
    await verifySegments({ ...s.deps, store }, s.job, s.plan);
    expect([...new Set(read)].sort()).toEqual([0, 1, 2].map((j) => segmentKey(s.job, j)).sort());
    expect(s.model.calls).toHaveLength(0);
  });
});

describe('putSegment and writeSegment', () => {
  it('stores a segment once; a second write of it is the same bytes and changes nothing', async () => {
    const s = await setup({ chunks: 2 });
    const key = segmentKey(s.job, 0);
    const before = readFileSync(s.file(key));
    await writeSegment(s.deps, s.job, s.plan, 0, firstFrameOf(s.plan, 0), s.kvs.get(0)!);
    expect(readFileSync(s.file(key)).equals(before)).toBe(true);
    const failing = new FaultyStore(s.stack.store, { put: () => { throw new Error('quota'); } });
    await expect(writeSegment({ ...s.deps, store: failing }, s.job, s.plan, 0, firstFrameOf(s.plan, 0), s.kvs.get(0)!)).rejects.toThrow('quota');
  });

  it('replaces a damaged segment only while it is still the damaged one', async () => {
    const s = await setup({ chunks: 2 });
    const key = segmentKey(s.job, 0);
    const before = readFileSync(s.file(key));
    flip(s.file(key), before.length - 1);
    const damaged = (await s.stack.store.head(key))!.etag;
    await writeSegment(s.deps, s.job, s.plan, 0, firstFrameOf(s.plan, 0), s.kvs.get(0)!, { replace: damaged });
    expect(readFileSync(s.file(key)).equals(before)).toBe(true);
    flip(s.file(key), before.length - 2); // other damage since: another ETag
    await writeSegment(s.deps, s.job, s.plan, 0, firstFrameOf(s.plan, 0), s.kvs.get(0)!, { replace: damaged });
    expect(readFileSync(s.file(key)).equals(before)).toBe(false); // not replaced
  });
});

describe('cacheWritePass and stepAfter', () => {
  it('feeds the graph the frames noised as conditioning, keyed by the lineage\'s chunk, in every row', async () => {
    const s = await setup({ init: 2, chunks: 2, guided: true });
    const frames = pseudoFrames(s.m, L, 7);
    const window = await readWindow(s.deps, s.job, s.plan, firstFrameOf(s.plan, 1));
    for (const [plan, chunk, noiseChunk] of [[s.plan, 1, 1], [{ ...s.plan, chunkOffset: 3 }, 1, 4], [{ ...s.plan, chunkOffset: 3 }, PREFIX_CHUNK, PREFIX_CHUNK]] as const) {
      s.model.calls = [];
      await cacheWritePass(s.model, s.job, plan, frames, chunk, 4, window);
      const [{ input, fetch }] = s.model.calls;
      const x = contextFrames(frames, s.m, { seed: s.job.request.seed, chunk: noiseChunk });
      expect(x).not.toEqual(frames);
      expect(fetch).toBe('kv');
      expect(input.x).toEqual(Float32Array.from([...x, ...x]));
      expect(input).toMatchObject({ pos: 4, rows: 2, frames: L, cacheFrames: window.frames, labels: s.plan.labels });
      expect(input.cache).toBe(window.cache);
      expect(Array.from(input.t)).toEqual(new Array(2 * L).fill(50));
    }
  });

  it('one row as it is', async () => {
    const s = await setup({ init: 0, chunks: 2, guided: false });
    const frames = pseudoFrames(s.m, L, 7);
    s.model.calls = [];
    await cacheWritePass(s.model, s.job, s.plan, frames, 0, 0, emptyWindow(s.m.cache_dtype));
    expect(s.model.calls[0].input.x).toEqual(contextFrames(frames, s.m, { seed: s.job.request.seed, chunk: 0 }));
    expect(s.model.calls[0].input.rows).toBe(1);
  });

  it('hands one row of clean frames to the graph as they are', async () => {
    const m = parseManifest({ ...manifestOf('layers', 'float16'), context_t: 0 });
    const model = new TinyModel(m);
    const plan = { chunkOffset: 0, rows: 1, labels: [1] } as unknown as JobPlan;
    const frames = pseudoFrames(m, L, 7);
    await cacheWritePass(model, { request: { seed: 1 } } as Job, plan, frames, 0, 0, emptyWindow(m.cache_dtype));
    expect(model.calls[0].input.x).toBe(frames);
  });

  it('stepAfter: the frames of x, each at t, after the window', () => {
    const m = manifestOf('layers', 'float16');
    const plan = { labels: [1, 9] } as JobPlan;
    const window = { cache: new Uint16Array(6), frames: 3, firstFrame: 2 };
    const x = new Float32Array(2 * 3 * frameFloats(m));
    const input = stepAfter(window, m, plan, 5, x, 321, 2);
    expect(input).toEqual({ x, t: new Float32Array(6).fill(321), labels: [1, 9], pos: 5, cache: window.cache, cacheFrames: 3, rows: 2, frames: 3 });
  });
});
