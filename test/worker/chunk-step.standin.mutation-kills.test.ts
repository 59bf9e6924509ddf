// The chunk step through runChunkStep with the stand-in graph (fast): what each chunk records,
// stores and sends; the kept window against the window read back; redeliveries; a duplicate or a
// cancel winning the compare-and-swap; the failures that end a job; segments stored in the background.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it, vi } from 'vitest';
import { runChunkStep, type ChunkDeps } from '../../gpu-worker/chunk-step.js';
import { ChunkFailure, OutOfOrderError } from '../../gpu-worker/errors.js';
import { cleanCopyKey } from '../../gpu-worker/clean-copy.js';
import { SegmentWrites } from '../../gpu-worker/segment-io.js';
import { WindowMemo } from '../../gpu-worker/window-memo.js';
import { readJob, updateJob } from '../../shared/jobs/job-store.js';
import { cacheSegmentKey, frameKey, inputFrameKey, jobKey, streamSegmentKey, videoKey } from '../../shared/keys.js';
import { resolveFfmpegPath } from '../../shared/media/mp4.js';
import type { Job } from '../../shared/schemas/job.js';
import { kvFrameBytes, type Manifest } from '../../shared/model/manifest.js';
import { jobPlan } from '../../gpu-worker/job-plan.js';
import { log } from '../../gpu-worker/log.js';
import { captureEmf } from '../shared/emf.js';
import { localStack, submitJob, tempDir } from './fixtures.js';
import { INIT_PNGS, recordingQueue, standIn, TINY, TINY_MANIFEST, watchedStore, WIDE_MANIFEST, type StoreWatch } from './standin.js';

const l = TINY.chunkFrames;
const WEBHOOK = 'https://hooks.example.com/ca2vdm';

interface Rig {
  stack: ReturnType<typeof localStack>;
  deps: ChunkDeps;
  watch: StoreWatch;
  tasks: Record<string, unknown>[];
  events: Record<string, unknown>[];
  calls: ReturnType<typeof standIn>['calls'];
  kvs: ReturnType<typeof standIn>['kvs'];
  job: Job;
}

/** A job of `frames` frames submitted to a fresh embedded stack, and the chunk step's dependencies over views of it. */
async function rig(opts: { id?: string; frames?: number; seed?: number; guidance?: number; init?: boolean; memo?: boolean; deps?: Partial<ChunkDeps>; before?: Parameters<typeof standIn>[0]; manifest?: Manifest } = {}): Promise<Rig> {
  const stack = localStack(tempDir());
  const manifest = opts.manifest ?? TINY_MANIFEST;
  const { model, calls, kvs } = standIn(opts.before, manifest);
  const job = await submitJob(stack, manifest, {
    ...(opts.id ? { id: opts.id } : {}),
    frames: opts.frames ?? 5, steps: 2, seed: opts.seed ?? 5, guidance: opts.guidance ?? 2, webhook: WEBHOOK, ...(opts.init ? { initPngs: INIT_PNGS } : {}),
  });
  const watch: StoreWatch = { cacheReads: [], contentTypes: {} };
  const tasks: Record<string, unknown>[] = [], events: Record<string, unknown>[] = [];
  const deps: ChunkDeps = {
    store: watchedStore(stack.store, watch),
    chunkQueue: recordingQueue(stack.chunkQueue, tasks),
    webhookQueue: recordingQueue(stack.webhookQueue, events),
    model,
    ...(opts.memo ? { windowMemo: new WindowMemo() } : {}),
    ...opts.deps,
  };
  return { stack, deps, watch, tasks, events, calls, kvs, job };
}

const step = (r: Rig, chunk: number, signal?: AbortSignal) => runChunkStep(r.deps, { job: r.job.id, tenant: r.job.tenant, chunk }, signal);
const stored = async (r: Rig) => (await readJob(r.stack.store, r.job.tenant, r.job.id))!.job;
const body = async (r: Rig, key: string) => (await r.stack.store.get(key))?.body;

/** Every frame and cache segment of a finished job, in order. */
async function outputs(r: Rig, frames: number) {
  const pngs = await Promise.all(Array.from({ length: frames }, (_, i) => body(r, frameKey(r.job.tenant, r.job.id, Math.floor(i / l), i % l))));
  const chunks = Math.ceil(frames / l);
  const segments = await Promise.all(Array.from({ length: chunks - 1 }, (_, k) => body(r, cacheSegmentKey(r.job.tenant, r.job.id, k))));
  return { pngs, segments };
}

/** Presentation time of the first frame of a stored HLS segment, in seconds. */
async function firstPts(bytes: Buffer): Promise<number> {
  const file = path.join(tempDir(), 'seg.ts');
  writeFileSync(file, bytes);
  const { stderr } = await promisify(execFile)(await resolveFfmpegPath(), ['-hide_banner', '-copyts', '-i', file, '-vf', 'showinfo', '-f', 'null', '-'], { encoding: 'utf8' });
  return Number(/pts_time:\s*([\d.]+)/.exec(stderr)![1]);
}

describe('runChunkStep, chunk by chunk (stand-in graph)', () => {
  it('records each chunk, stores its frames, copy, HLS segment and K/V, sends the next task and the events', async () => {
    const r = await rig({ frames: 5 });
    // Accepted 10 s ago: chunk 0 waited that long.
    await updateJob(r.stack.store, r.job.tenant, r.job.id, (j) => ({ ...j, created_at: new Date(Date.now() - 10_000).toISOString() }));
    const { tenant, id } = r.job;
    const { result: outcomes, metrics } = await captureEmf('Ca2vdmTest', async () => {
      const got: string[] = [];
      for (let k = 0; k < 3; k++) {
        const before = Date.now();
        got.push(await step(r, k));
        const after = Date.now();
        const j = await stored(r);
        expect(j.progress).toMatchObject({ chunks_done: k + 1, frames_done: Math.min(5, (k + 1) * l) });
        expect(j.metrics.chunk_seconds).toHaveLength(k + 1);
        expect(j.metrics.chunk_seconds[k]).toBeGreaterThan(0);
        expect(j.metrics.chunk_seconds[k]).toBeLessThanOrEqual((after - before) / 1000 + 0.001);
        expect(Math.round(j.metrics.chunk_seconds[k] * 1000)).toBe(j.metrics.chunk_seconds[k] * 1000);
        if (k === 0) {
          expect(j.status).toBe('processing');
          expect(Date.parse(j.started_at!)).toBeGreaterThanOrEqual(before - 1);
          expect(Date.parse(j.started_at!)).toBeLessThanOrEqual(after + 1);
          expect(j.metrics.queue_wait_s).toBeGreaterThanOrEqual(9.9);
          expect(j.metrics.queue_wait_s).toBeLessThanOrEqual(10 + (after - Date.parse(r.job.created_at)) / 1000);
          expect(Math.round(j.metrics.queue_wait_s! * 1000)).toBe(j.metrics.queue_wait_s! * 1000);
        }
      }
      return got;
    });
    expect(outcomes).toEqual(['computed', 'computed', 'finalized']);
    const j = await stored(r);
    expect(j.status).toBe('succeeded');
    expect(j.started_at).toBeDefined();
    expect(Date.parse(j.started_at!)).toBeLessThanOrEqual(Date.parse(j.completed_at!));
    expect(j.outputs).toMatchObject({ video: expect.any(String), gif: expect.any(String) });
    expect(j.metrics.chunk_seconds).toHaveLength(3);

    // One task for each next chunk, in order; then none.
    expect(r.tasks.map((t) => t.chunk)).toEqual([1, 2]);
    expect(r.tasks.every((t) => t.job === id && t.tenant === tenant)).toBe(true);
    // start once, an output per chunk, completed.
    expect(r.events.map((e) => [e.type, e.chunk])).toEqual([['start', undefined], ['output', 0], ['output', 1], ['output', 2], ['completed', undefined]]);
    expect(r.events.slice(1, 4).map((e) => (e.payload as { job: Job }).job.progress.chunks_done)).toEqual([1, 2, 3]);

    // Frames: the chunk's, PNG; the last chunk only the one frame the video keeps.
    for (const [k, n] of [[0, 2], [1, 2], [2, 1]]) {
      for (let i = 0; i < n; i++) expect(r.watch.contentTypes[frameKey(tenant, id, k, i)]).toBe('image/png');
      expect(await r.stack.store.head(cleanCopyKey(r.job, k))).not.toBeNull();
      expect(r.watch.contentTypes[streamSegmentKey(tenant, id, k)]).toBe('video/mp2t');
    }
    expect(await r.stack.store.head(frameKey(tenant, id, 2, 1))).toBeNull();
    // K/V for every chunk a later one attends to; none for the last.
    expect(await r.stack.store.head(cacheSegmentKey(tenant, id, 0))).not.toBeNull();
    expect(await r.stack.store.head(cacheSegmentKey(tenant, id, 1))).not.toBeNull();
    expect(await r.stack.store.head(cacheSegmentKey(tenant, id, 2))).toBeNull();
    // Each chunk's HLS segment starts where the video's clock is at its first frame (8 fps).
    expect(await firstPts((await body(r, streamSegmentKey(tenant, id, 1)))!)).toBeCloseTo(l / 8, 3);
    expect(await firstPts((await body(r, streamSegmentKey(tenant, id, 2)))!)).toBeCloseTo((2 * l) / 8, 3);

    // Metrics: each chunk's seconds as recorded on the job; the queue wait once, for chunk 0.
    expect(metrics.filter((m) => m.name === 'ChunkSeconds').map((m) => m.value)).toEqual(j.metrics.chunk_seconds.map((s) => expect.closeTo(s, 2)));
    expect(metrics.filter((m) => m.name === 'QueueWaitSeconds').map((m) => m.value)).toEqual([expect.closeTo(j.metrics.queue_wait_s!, 2)]);
  });

  it('counts no queue wait for a job whose creation time is ahead of this worker\'s clock', async () => {
    const r = await rig({ frames: 3 });
    await updateJob(r.stack.store, r.job.tenant, r.job.id, (j) => ({ ...j, created_at: new Date(Date.now() + 60_000).toISOString() }));
    expect(await step(r, 0)).toBe('computed');
    expect((await stored(r)).metrics.queue_wait_s).toBe(0);
  });

  it.each([
    { name: 'guided, with starting frames', guidance: 2, init: true },
    { name: 'unguided, no starting frames', guidance: 1, init: false },
  ])('gives the same video whether the worker keeps each window or reads it back ($name)', async ({ guidance, init }) => {
    const frames = 7;
    const runAll = async (memo: boolean) => {
      const r = await rig({ id: 'samejob', frames, guidance, init, memo });
      const readsBeforeLast: number[] = [];
      for (let k = 0; k < 4; k++) {
        expect(await step(r, k)).toBe(k < 3 ? 'computed' : 'finalized');
        if (k < 3) readsBeforeLast.push(r.watch.cacheReads.length);
      }
      expect((await stored(r)).status).toBe('succeeded');
      return { r, readsBeforeLast, ...(await outputs(r, frames)) };
    };
    const warm = await runAll(true);
    const cold = await runAll(false);
    for (const [i, png] of warm.pngs.entries()) expect(png!.equals(cold.pngs[i]!), `frame ${i}`).toBe(true);
    for (const [k, seg] of warm.segments.entries()) expect(seg!.equals(cold.segments[k]!), `segment ${k}`).toBe(true);
    if (init) {
      expect((await body(warm.r, cacheSegmentKey(warm.r.job.tenant, warm.r.job.id, 'prefix')))!.equals((await body(cold.r, cacheSegmentKey(cold.r.job.tenant, cold.r.job.id, 'prefix')))!)).toBe(true);
    }
    // Kept: no chunk reads a segment back (the starting frames' K/V included); read back: every chunk after the first does.
    expect(warm.readsBeforeLast).toEqual([0, 0, 0]);
    expect(cold.readsBeforeLast[2]).toBeGreaterThan(cold.readsBeforeLast[1]);
    expect(cold.readsBeforeLast[1]).toBeGreaterThan(cold.readsBeforeLast[0]);
    if (init) expect(cold.readsBeforeLast[0]).toBeGreaterThan(0);
    else expect(cold.readsBeforeLast[0]).toBe(0);
    // Guided: two rows per call; unguided: one.
    expect(new Set(warm.r.calls.map((c) => c.rows))).toEqual(new Set([guidance === 1 ? 1 : 2]));
    // The window grows to P_max and no further.
    expect(Math.max(...warm.r.calls.map((c) => c.cacheFrames))).toBe(TINY.pMax);
  });

  it('keeps two jobs\' windows apart on one worker', async () => {
    const memo = new WindowMemo();
    const a = await rig({ frames: 5, seed: 1, memo: true, init: true });
    const b = await rig({ frames: 5, seed: 2, init: true, deps: { windowMemo: memo } });
    a.deps.windowMemo = memo;
    // Same positions, other noise: a window taken for the wrong job would show in the frames.
    const readsBeforeLast: number[] = [];
    for (let k = 0; k < 3; k++) {
      readsBeforeLast.push(b.watch.cacheReads.length);
      await step(a, k);
      await step(b, k);
    }
    const alone = await rig({ frames: 5, seed: 2, init: true });
    for (let k = 0; k < 3; k++) await step(alone, k);
    const got = await outputs(b, 5), want = await outputs(alone, 5);
    for (const [i, png] of got.pngs.entries()) expect(png!.equals(want.pngs[i]!), `frame ${i}`).toBe(true);
    expect(readsBeforeLast).toEqual([0, 0, 0]);
  });

  it('says which job, model and rows when a window is too large to keep, and reads every window from the store', async () => {
    const r = await rig({ frames: 5, init: true, deps: { windowMemo: new WindowMemo(1) } });
    const errors = vi.spyOn(log, 'error').mockImplementation(() => {});
    const reads: number[] = [];
    try {
      for (let k = 0; k < 3; k++) {
        reads.push(r.watch.cacheReads.length);
        await step(r, k);
      }
      expect(errors).toHaveBeenCalledTimes(1);
      expect(errors.mock.calls[0][1]).toMatchObject({ job: r.job.id, model: TINY_MANIFEST.name, rows: 2, memo_bytes: 1 });
    } finally {
      errors.mockRestore();
    }
    expect((await stored(r)).status).toBe('succeeded');
    expect(reads[2]).toBeGreaterThan(reads[1]);
  });
});

describe('runChunkStep on a job that decides for it', () => {
  it('skips the task of a job that is gone', async () => {
    const r = await rig();
    await r.stack.store.delete(jobKey(r.job.tenant, r.job.id));
    expect(await step(r, 0)).toBe('skipped');
    expect(r.calls).toEqual([]);
    expect([...r.tasks, ...r.events]).toEqual([]);
  });

  it('sends a finished job\'s completed event again, computing nothing', async () => {
    const r = await rig();
    await updateJob(r.stack.store, r.job.tenant, r.job.id, (j) => ({ ...j, status: 'succeeded', completed_at: new Date().toISOString() }));
    expect(await step(r, 0)).toBe('skipped');
    expect(r.calls).toEqual([]);
    expect(r.events.map((e) => e.type)).toEqual(['completed']);
    expect(r.tasks).toEqual([]);
  });

  it('ends a job whose cancel was requested, computing nothing', async () => {
    const r = await rig();
    await updateJob(r.stack.store, r.job.tenant, r.job.id, (j) => ({ ...j, cancel_requested: true }));
    expect(await step(r, 0)).toBe('canceled');
    expect(r.calls).toEqual([]);
    const j = await stored(r);
    expect(j.status).toBe('canceled');
    expect(r.events.map((e) => e.type)).toEqual(['completed']);
    expect(r.tasks).toEqual([]);
  });

  it('on a redelivered chunk already recorded, sends its successor again and computes nothing', async () => {
    const r = await rig({ frames: 7 });
    for (let k = 0; k < 3; k++) await step(r, k);
    r.tasks.length = 0;
    r.events.length = 0;
    const calls = r.calls.length;
    const before = await stored(r);
    // The newest recorded chunk: its successor is the chunk to compute now.
    expect(await step(r, 2)).toBe('computed');
    // An older one: its successor was computed already.
    expect(await step(r, 0)).toBe('skipped');
    expect(r.tasks.map((t) => t.chunk)).toEqual([3, 1]);
    expect(r.calls).toHaveLength(calls);
    expect(r.events).toEqual([]);
    expect(await stored(r)).toEqual(before);
  });

  it('finalizes a job whose last chunk was recorded by a worker that failed before the finish', async () => {
    const r = await rig({ frames: 3 });
    await step(r, 0);
    const video = videoKey(r.job.tenant, r.job.id);
    let fail = true;
    r.watch.beforePut = (key) => { if (key === video && fail) { fail = false; throw new Error('store unavailable'); } };
    await expect(step(r, 1)).rejects.toThrow('store unavailable');
    expect(await stored(r)).toMatchObject({ status: 'processing', progress: { chunks_done: 2 } });
    const calls = r.calls.length;
    r.tasks.length = 0;
    // The redelivered last chunk: recorded already, so straight to the finish.
    expect(await step(r, 1)).toBe('finalized');
    expect(r.calls).toHaveLength(calls);
    const j = await stored(r);
    expect(j.status).toBe('succeeded');
    expect(j.outputs?.video).toBe(video);
    expect(r.tasks).toEqual([]);
  });

  it('fails a job accepted for another model, naming both', async () => {
    const r = await rig();
    await updateJob(r.stack.store, r.job.tenant, r.job.id, (j) => ({ ...j, model: { ...j.model, name: 'other', sha256: 'a'.repeat(64) } }));
    const err = await step(r, 0).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChunkFailure);
    expect((err as ChunkFailure).code).toBe('model_mismatch');
    expect((err as ChunkFailure).message).toBe(`job was accepted for model other (${'a'.repeat(64)}); this worker serves ${TINY_MANIFEST.name} (${TINY_MANIFEST.onnx_sha256})`);
    expect(r.calls).toEqual([]);
    expect(r.events).toEqual([]);
  });

  it('leaves a chunk that comes before its turn, touching nothing', async () => {
    const r = await rig();
    const before = await stored(r);
    const err = await step(r, 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutOfOrderError);
    expect(err).toMatchObject({ chunk: 1, chunksDone: 0 });
    expect(r.calls).toEqual([]);
    expect([...r.tasks, ...r.events]).toEqual([]);
    expect(await stored(r)).toEqual(before);
  });
});

describe('runChunkStep when the job changes while the chunk is computed', () => {
  /** A rig whose store runs `meanwhile` on the job once chunk `k`'s first frame is being stored (after its denoising). */
  async function racing(k: number, meanwhile: (r: Rig) => Promise<void>) {
    const r = await rig({ frames: 7 });
    let done = false;
    r.watch.beforePut = async (key) => {
      if (!done && key === frameKey(r.job.tenant, r.job.id, k, 0)) { done = true; await meanwhile(r); }
    };
    return r;
  }

  it('a duplicate that recorded the chunk first wins: nothing recorded again, no event, the next task made sure of', async () => {
    const r = await racing(1, async (x) => {
      await updateJob(x.stack.store, x.job.tenant, x.job.id, (j) => {
        j.progress.chunks_done = 2;
        j.progress.frames_done = 4;
        j.metrics.chunk_seconds[1] = 123;
        return j;
      });
    });
    await step(r, 0);
    r.tasks.length = 0;
    r.events.length = 0;
    expect(await step(r, 1)).toBe('skipped');
    const j = await stored(r);
    expect(j.metrics.chunk_seconds).toEqual([expect.any(Number), 123]);
    expect(j.progress.chunks_done).toBe(2);
    expect(r.tasks.map((t) => t.chunk)).toEqual([2]);
    expect(r.events).toEqual([]);
  });

  it('a duplicate that got two chunks further: still only the successor of this chunk is sent', async () => {
    const r = await racing(1, async (x) => {
      await updateJob(x.stack.store, x.job.tenant, x.job.id, (j) => ({ ...j, progress: { ...j.progress, chunks_done: 3, frames_done: 6 } }));
    });
    await step(r, 0);
    r.tasks.length = 0;
    expect(await step(r, 1)).toBe('skipped');
    expect(r.tasks.map((t) => t.chunk)).toEqual([2]);
    expect((await stored(r)).progress.chunks_done).toBe(3);
  });

  it('a job canceled meanwhile stays canceled: nothing recorded, nothing sent', async () => {
    const r = await racing(0, async (x) => {
      await updateJob(x.stack.store, x.job.tenant, x.job.id, (j) => ({ ...j, status: 'canceled', completed_at: new Date().toISOString() }));
    });
    expect(await step(r, 0)).toBe('skipped');
    const j = await stored(r);
    expect(j.status).toBe('canceled');
    expect(j.progress.chunks_done).toBe(0);
    expect(j.metrics.chunk_seconds).toEqual([]);
    expect(r.tasks).toEqual([]);
    expect(r.events.map((e) => e.type)).toEqual(['start']);
  });

  it('a job deleted meanwhile: skipped, nothing sent', async () => {
    const r = await racing(0, async (x) => { await x.stack.store.delete(jobKey(x.job.tenant, x.job.id)); });
    expect(await step(r, 0)).toBe('skipped');
    expect(r.tasks).toEqual([]);
    expect(r.events.map((e) => e.type)).toEqual(['start']);
  });
});

describe('runChunkStep failures', () => {
  it('fails on a starting frame missing from the store, naming it', async () => {
    const r = await rig({ init: true });
    await r.stack.store.delete(inputFrameKey(r.job.tenant, r.job.id, 1));
    const err = await step(r, 0).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChunkFailure);
    expect(err).toMatchObject({ code: 'input_missing', message: 'starting frame 1 is missing from the store' });
    expect((await stored(r)).progress.chunks_done).toBe(0);
  });

  it('computes the starting frames\' K/V once: a redelivered chunk 0 finds it stored', async () => {
    const r = await rig({ init: true });
    expect(await step(r, 0)).toBe('computed');
    const prefix = cacheSegmentKey(r.job.tenant, r.job.id, 'prefix');
    const first = (await body(r, prefix))!;
    // The prefix pass (3 frames at position 0) and the chunk's own t = 0 pass.
    expect(r.calls.filter((c) => c.fetch === 'kv').map((c) => [c.pos, c.frames])).toEqual([[0, 3], [3, 2]]);
    // Chunk 0 again, as after a crash before its record (the same job record, as it was).
    await updateJob(r.stack.store, r.job.tenant, r.job.id, (j) => ({ ...j, progress: { ...j.progress, chunks_done: 0, frames_done: 0 }, metrics: { chunk_seconds: [] } }));
    r.calls.length = 0;
    expect(await step(r, 0)).toBe('computed');
    expect(r.calls.filter((c) => c.fetch === 'kv').map((c) => [c.pos, c.frames])).toEqual([[3, 2]]);
    expect((await body(r, prefix))!.equals(first)).toBe(true);
  });

  it('fails a chunk whose earlier frames are gone with their clean copy', async () => {
    const r = await rig({ frames: 5 });
    await step(r, 0);
    await r.stack.store.delete(frameKey(r.job.tenant, r.job.id, 0, 1));
    await r.stack.store.delete(cleanCopyKey(r.job, 0));
    const err = await step(r, 1).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'frames_missing' });
    expect((await stored(r)).progress.chunks_done).toBe(1);
  });

  it('a failed model call fails the chunk: nothing stored, nothing recorded', async () => {
    const broken = new Error('device lost');
    const r = await rig({ before: (input) => { if (input.pos >= l) throw broken; } });
    await step(r, 0);
    await expect(step(r, 1)).rejects.toBe(broken);
    expect(await r.stack.store.head(frameKey(r.job.tenant, r.job.id, 1, 0))).toBeNull();
    expect(await r.stack.store.head(streamSegmentKey(r.job.tenant, r.job.id, 1))).toBeNull();
    expect((await stored(r)).progress.chunks_done).toBe(1);
  });
});

describe('runChunkStep with segments stored in the background', () => {
  it('stores a large segment after the step returns, and one at a time', async () => {
    const writes = new SegmentWrites();
    const atPut: Record<string, number> = {};
    const order: string[] = [];
    let releaseFirst!: () => void;
    const firstHeld = new Promise<void>((res) => { releaseFirst = res; });
    // Segment 0's put is held until chunk 1 has made its t = 0 pass, and a moment more: time for it
    // to start its own segment if it did not wait for segment 0.
    const r = await rig({ frames: 7, memo: true, deps: { segmentWrites: writes, deferSegmentBytes: 0 }, before: (input, fetch) => {
      if (fetch === 'kv' && input.pos === l) setTimeout(releaseFirst, 50);
    } });
    const seg = (k: number) => cacheSegmentKey(r.job.tenant, r.job.id, k);
    r.watch.beforePut = async (key) => {
      if (!key.includes('/cache/')) return;
      atPut[key] = writes.size;
      order.push(`start ${key}`);
      if (key === seg(0)) await firstHeld;
    };
    r.watch.afterPut = (key) => { if (key.includes('/cache/')) order.push(`end ${key}`); };

    expect(await step(r, 0)).toBe('computed');
    // The step returned with its segment still on its way.
    expect(atPut[seg(0)]).toBe(1);
    expect(await r.stack.store.head(seg(0))).toBeNull();
    expect(await step(r, 1)).toBe('computed');
    await writes.drain();
    // Segment 1 started only once segment 0 had landed.
    expect(order).toEqual([`start ${seg(0)}`, `end ${seg(0)}`, `start ${seg(1)}`, `end ${seg(1)}`]);
    expect(await r.stack.store.head(seg(1))).not.toBeNull();
  });

  it('stores a segment below the threshold before the step returns', async () => {
    const writes = new SegmentWrites();
    const r = await rig({ frames: 5, deps: { segmentWrites: writes, deferSegmentBytes: 1e9 } });
    let pending = -1;
    r.watch.beforePut = (key) => { if (key.includes('/cache/')) pending = writes.size; };
    expect(await step(r, 0)).toBe('computed');
    expect(pending).toBe(0);
    expect(await r.stack.store.head(cacheSegmentKey(r.job.tenant, r.job.id, 0))).not.toBeNull();
  });

  it.each(['frames', 'HLS segment'])('records the chunk and sends the next task while the t = 0 pass runs, once the chunk\'s frames and HLS segment are stored (the %s last)', async (lastStored) => {
    const writes = new SegmentWrites();
    let recorded!: () => void;
    const wasRecorded = new Promise<'recorded'>((res) => { recorded = () => res('recorded'); });
    let pass: string | undefined;
    // Chunk 0's t = 0 pass is held until the chunk is recorded (or 2 s: a step that waits for the pass first).
    const r = await rig({ frames: 5, deps: { segmentWrites: writes, deferSegmentBytes: 0 }, before: async (input, fetch) => {
      if (fetch !== 'kv' || input.pos !== 0) return;
      pass = await Promise.race([wasRecorded, new Promise<string>((res) => setTimeout(() => res('timed out'), 2000))]);
    } });
    // One of the two is slow to store: the chunk is recorded only once both are.
    const slow = lastStored === 'frames'
      ? new Set([...Array.from({ length: l }, (_, i) => frameKey(r.job.tenant, r.job.id, 0, i)), cleanCopyKey(r.job, 0)])
      : new Set([streamSegmentKey(r.job.tenant, r.job.id, 0)]);
    r.watch.beforePut = async (key) => { if (slow.has(key)) await new Promise((res) => setTimeout(res, 400)); };
    const seen: unknown[] = [];
    const outcome = await runChunkStep(r.deps, { job: r.job.id, tenant: r.job.tenant, chunk: 0 }, undefined, async (o) => {
      const heads = await Promise.all([
        ...Array.from({ length: l }, (_, i) => r.stack.store.head(frameKey(r.job.tenant, r.job.id, 0, i))),
        r.stack.store.head(streamSegmentKey(r.job.tenant, r.job.id, 0)),
        r.stack.store.head(cleanCopyKey(r.job, 0)),
      ]);
      seen.push({ outcome: o, stored: heads.every((h) => h !== null), chunks_done: (await stored(r)).progress.chunks_done, tasks: r.tasks.map((t) => t.chunk), pass });
      recorded();
    });
    expect(outcome).toBe('computed');
    expect(pass).toBe('recorded');
    expect(seen).toEqual([{ outcome: 'computed', stored: true, chunks_done: 1, tasks: [1], pass: undefined }]);
    await writes.drain();
    expect(await r.stack.store.head(cacheSegmentKey(r.job.tenant, r.job.id, 0))).not.toBeNull();
  });

  it('stores a segment of exactly the threshold in the background, and one a byte under it before the step returns', async () => {
    for (const [extra, pendingAtPut] of [[0, 1], [1, 0]] as const) {
      const writes = new SegmentWrites();
      const r = await rig({ frames: 5, deps: { segmentWrites: writes } });
      r.deps.deferSegmentBytes = l * kvFrameBytes(TINY_MANIFEST, jobPlan(r.job, TINY_MANIFEST).rows) + extra;
      let pending = -1;
      r.watch.beforePut = (key) => { if (key.includes('/cache/')) pending = writes.size; };
      expect(await step(r, 0)).toBe('computed');
      await writes.drain();
      expect(pending, `threshold + ${extra}`).toBe(pendingAtPut);
    }
  });

  it.each([
    ['an error', new Error('kv pass failed'), 'Error: kv pass failed'],
    ['nothing', undefined, 'Error: cache write failed'],
  ])('logs a t = 0 pass that fails (with %s) after the job advanced; the chunk stands, and the next rebuilds the segment', async (_, thrown, logged) => {
    const writes = new SegmentWrites();
    let failed = false; // once: the rebuild's own pass succeeds
    const r = await rig({ frames: 5, deps: { segmentWrites: writes, deferSegmentBytes: 0 }, before: (input, fetch) => {
      if (fetch === 'kv' && input.pos === 0 && !failed) { failed = true; throw thrown; }
    } });
    const errors = vi.spyOn(log, 'error').mockImplementation(() => {});
    try {
      expect(await step(r, 0)).toBe('computed');
      expect(errors.mock.calls).toEqual([['cache write failed after the job advanced; the next reader rebuilds the segment', { job: r.job.id, chunk: 0, error: logged }]]);
    } finally {
      errors.mockRestore();
    }
    expect((await stored(r)).progress.chunks_done).toBe(1);
    expect(r.tasks.map((t) => t.chunk)).toEqual([1]);
    const segment = cacheSegmentKey(r.job.tenant, r.job.id, 0);
    expect(await r.stack.store.head(segment)).toBeNull();
    expect(await step(r, 1)).toBe('computed');
    expect(await r.stack.store.head(segment)).not.toBeNull();
  });

  it('logs the frames\' write and the background cache write as phases of their own', async () => {
    const spans = async (deferSegmentBytes: number) => {
      const writes = new SegmentWrites();
      const r = await rig({ frames: 5, deps: { segmentWrites: writes, deferSegmentBytes } });
      const debug = vi.spyOn(log, 'debug');
      try {
        await step(r, 0);
        return Object.keys((debug.mock.calls.find(([m]) => m === 'chunk phases')![1] as { ms: object }).ms).sort();
      } finally {
        debug.mockRestore();
        await writes.drain();
      }
    };
    const background = await spans(0);
    expect(background).toContain('write');
    expect(background).toContain('cache_write');
    const inline = await spans(1e9);
    expect(inline).toContain('write');
    expect(inline).not.toContain('cache_write');
    expect([...background, ...inline]).not.toContain('');
  });

  it('hands a large K/V to the hashing thread: the graph\'s output is given up, the segment the same as one hashed here', async () => {
    const run = async (deferSegmentBytes: number) => {
      const writes = new SegmentWrites();
      const r = await rig({ id: 'wide', frames: 5, manifest: WIDE_MANIFEST, deps: { segmentWrites: writes, deferSegmentBytes } });
      expect(await step(r, 0)).toBe('computed');
      await writes.drain();
      return { kv: r.kvs[0], segment: await body(r, cacheSegmentKey(r.job.tenant, r.job.id, 0)) };
    };
    const here = await run(1e12);
    const handed = await run(0);
    expect(here.kv.byteLength).toBeGreaterThan(0);
    expect(handed.kv.byteLength).toBe(0); // detached: the hashing thread had it
    expect(handed.segment!.equals(here.segment!)).toBe(true);
  });
});
