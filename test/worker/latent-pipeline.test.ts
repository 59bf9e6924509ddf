/**
 * A format-2 (latent, two-cache) model through the job pipeline, one task per chunk, with the
 * committed tiny random-weight official model: the chunks equal the in-memory chunk loop's
 * (latent-generate.ts) for the same seed, whether the worker keeps its window or reads every one
 * from the store, and a lost or damaged segment is rebuilt from the stored latents, the same bytes.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { generateLatentVideo } from '../../gpu-worker/latent-generate.js';
import { decodeLatents, latentsKey, latentWindowBytes } from '../../gpu-worker/latent-chunk.js';
import { LatentModelSession } from '../../gpu-worker/latent-session.js';
import { runChunkStep } from '../../gpu-worker/chunk-step.js';
import { ChunkWorker } from '../../gpu-worker/worker.js';
import { log } from '../../gpu-worker/log.js';
import { SegmentWrites } from '../../gpu-worker/segment-io.js';
import { createJob, readJob, updateJob } from '../../shared/jobs/job-store.js';
import { cacheSegmentKey, frameKey, inputFrameKey } from '../../shared/keys.js';
import { framesToPngs, pngToFrame } from '../../shared/media/png.js';
import { f16ToF32, f32ToF16 } from '../../shared/cache/f16.js';
import { chunkTaskDedupId } from '../../shared/schemas/chunk-task.js';
import type { Job } from '../../shared/schemas/job.js';
import { drainQueue, localStack, tempDir } from './fixtures.js';
import { createVideo, extendVideo } from '../../shared/api/videos.js';
import { decodeSegment, decodeSegmentHeader } from '../../shared/cache/segment.js';
import { testConfig } from '../api/helpers.js';

const TINY = fileURLToPath(new URL('../../model/artifacts/official-tiny-random/', import.meta.url));
// 1 starting frame, chunks of 2, P_max 5: from chunk 2 on, frames leave the window. 9 frames end
// on a chunk that keeps only one of its two frames.
const FRAMES = 9;
const CHUNKS = 5;
const STEPS = 3;
const SEED = 11;

let model: LatentModelSession;
let startPng: Buffer;
let expected: { latents: Float32Array; pngs: Buffer[] };

beforeAll(async () => {
  model = await LatentModelSession.open(TINY, 'cpu', 1);
  const m = model.manifest;
  const px = m.frame.height * m.frame.width;
  const g = { ...m.frame };
  [startPng] = framesToPngs(Float32Array.from({ length: 3 * px }, (_, i) => Math.sin((i % px) / 29 + Math.floor(i / px)) * 0.7), g);
  // The in-memory loop from the very frame the pipeline decodes from the stored PNG.
  const video = await generateLatentVideo(model, pngToFrame(startPng, g), 1, CHUNKS, { seed: SEED, steps: STEPS });
  const per = 3 * px;
  const made = video.frames.subarray(per, (1 + FRAMES) * per); // the starting frame is not the video's
  expected = { latents: video.latents, pngs: framesToPngs(f16ToF32(f32ToF16(made)), g) };
});
afterAll(() => model.release());

async function submit(stack: ReturnType<typeof localStack>, frames = FRAMES): Promise<Job> {
  const m = model.manifest;
  const now = new Date().toISOString();
  const id = `job${Math.random().toString(36).slice(2, 10)}`;
  const tenant = 'tenant1';
  const keys = [inputFrameKey(tenant, id, 0)];
  await stack.store.put(keys[0], startPng);
  const job: Job = {
    id, tenant, status: 'starting',
    request: { frames, seed: SEED, guidance: m.guidance.default, steps: STEPS, init_frames: { count: 1, keys }, webhook_events_filter: ['completed'] },
    model: { name: m.name, sha256: m.onnx_sha256, chunk_frames: m.chunk_frames },
    progress: { chunks_done: 0, chunks_total: Math.ceil(frames / m.chunk_frames), frames_done: 0, frames_total: frames },
    created_at: now, updated_at: now, metrics: { chunk_seconds: [] }, outputs: {}, cancel_requested: false,
  };
  await createJob(stack.store, job);
  const task = { job: id, tenant, chunk: 0 };
  await stack.chunkQueue.send(JSON.stringify(task), { groupId: id, dedupId: chunkTaskDedupId(task) });
  return job;
}

/** The job's stored latents (every chunk's whole chunk) and PNG frames, in order. */
async function outputs(stack: ReturnType<typeof localStack>, job: Job): Promise<{ latents: Float32Array[]; pngs: Buffer[] }> {
  const m = model.manifest;
  const l = m.chunk_frames;
  const per = m.latent.channels * m.latent.height * m.latent.width;
  const latents: Float32Array[] = [];
  const pngs: Buffer[] = [];
  for (let k = 0; k < job.progress.chunks_total; k++) {
    const obj = await stack.store.get(latentsKey(job, k));
    latents.push(decodeLatents(obj!.body, { job: job.id, chunk: k, frames: l, floats: l * per })!);
    for (let i = 0; i < Math.min(l, job.request.frames - k * l); i++) pngs.push((await stack.store.get(frameKey(job.tenant, job.id, k, i)))!.body);
  }
  return { latents, pngs };
}

function expectSameAsInMemory(got: { latents: Float32Array[]; pngs: Buffer[] }): void {
  got.latents.forEach((z, k) => expect(z, `latents of chunk ${k}`).toEqual(expectedLatents(k)));
  expect(got.pngs.length).toBe(FRAMES);
  got.pngs.forEach((png, f) => expect(png.equals(expected.pngs[f]), `frame ${f}`).toBe(true));
}

/** The job ended `succeeded`, repaired nothing, and made the in-memory loop's latents and frames. */
async function expectCleanRun(stack: ReturnType<typeof localStack>, job: Job): Promise<void> {
  const done = (await readJob(stack.store, job.tenant, job.id))!.job;
  expect(done.status).toBe('succeeded');
  expect(done.repairs ?? []).toEqual([]);
  expectSameAsInMemory(await outputs(stack, job));
}

describe('a latent model through the job pipeline', () => {
  it('makes the in-memory chunk loop\'s latents and frames, with the window kept or read from the store', async () => {
    const warm = localStack(tempDir());
    const warmJob = await submit(warm);
    await drainQueue(warm, model);
    expect((await readJob(warm.store, warmJob.tenant, warmJob.id))!.job.status).toBe('succeeded');
    expectSameAsInMemory(await outputs(warm, warmJob));

    const cold = localStack(tempDir());
    const coldJob = await submit(cold);
    await drainQueue(cold, model, { windowMemoBytes: 0 });
    await expectCleanRun(cold, coldJob);
  }, 120_000);

  it('keeps its window as the graph\'s fp16 bits: a memo of one window\'s fp16 bytes holds it, and no segment is read back', async () => {
    const stack = localStack(tempDir());
    const job = await submit(stack);
    const reads: string[] = [];
    const store = Object.create(stack.store) as typeof stack.store;
    const get = stack.store.get.bind(stack.store);
    store.get = (key, ...rest) => { if (key.includes('/cache/')) reads.push(key); return get(key, ...rest); };
    // The largest window fits this budget only at 2 bytes a value (as floats it is dropped, and every chunk reads its window).
    await drainQueue({ ...stack, store }, model, { windowMemoBytes: latentWindowBytes(model.manifest) });
    expect(model.manifest.kv_dtype).toBe('float16');
    const done = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(done.status).toBe('succeeded');
    // Only the end-of-job check reads the segments, once each: the prefix and chunks 0-3.
    expect(reads.length).toBe(CHUNKS);
    expectSameAsInMemory(await outputs(stack, job));
  }, 120_000);

  /** The stack's store with each cache segment's put held `ms` first, and the one under `lose.key` failing. */
  function slowSegments(stack: ReturnType<typeof localStack>, ms: number, lose: { key: string }) {
    const store = Object.create(stack.store) as typeof stack.store;
    const put = stack.store.put.bind(stack.store);
    const head = stack.store.head.bind(stack.store);
    const heads: string[] = [];
    store.put = async (key, body, opts) => {
      if (key === lose.key) throw new Error('worker died');
      if (key.includes('/cache/')) await new Promise((r) => setTimeout(r, ms));
      return put(key, body, opts);
    };
    store.head = (key) => { heads.push(key); return head(key); };
    return { store, heads };
  }

  it.each([
    ['keeps its window', {}],
    ['reads every window from the store', { windowMemoBytes: 0 }],
  ])('stores every segment in the background and still makes the in-memory loop\'s video (the worker %s, waiting for its own writes)', async (_, opts) => {
    const stack = localStack(tempDir());
    const job = await submit(stack);
    // Slow segment writes, and no wait for another worker's: a read that did not wait for this
    // worker's own write would rebuild the segment, and say so.
    const { store } = slowSegments(stack, 300, { key: '' });
    await drainQueue({ ...stack, store }, model, { ...opts, deferSegmentBytes: 0, segmentWaitMs: 0 });
    await expectCleanRun(stack, job);
  }, 120_000);

  it('advances the job before a background segment is stored; another worker waits for it, or rebuilds it from its latents once the wait is over', async () => {
    const stack = localStack(tempDir());
    const job = await submit(stack);
    const seg = (k: number) => cacheSegmentKey(job.tenant, job.id, k);
    const lose = { key: '' };
    const { store, heads } = slowSegments(stack, 700, lose);
    /** Chunk k on a worker of its own (its own background writes), waiting up to `waitMs` for another's. */
    const step = async (k: number, writes: SegmentWrites, waitMs: number) =>
      runChunkStep({ ...stack, store, model, segmentWrites: writes, deferSegmentBytes: 0, segmentWaitMs: waitMs }, { job: job.id, tenant: job.tenant, chunk: k });
    const first = new SegmentWrites();
    expect(await step(0, first, 0)).toBe('computed');
    // Recorded, and chunk 1's task sent, while segment 0 is still on its way.
    expect((await readJob(stack.store, job.tenant, job.id))!.job.progress.chunks_done).toBe(1);
    expect(first.size).toBe(1);
    expect(await stack.store.head(seg(0))).toBeNull();
    await first.drain();
    expect(await stack.store.head(seg(0))).not.toBeNull();
    // Chunk 1's segment is still being stored when another worker takes chunk 2: it waits for it.
    // That worker then dies storing chunk 2's segment.
    expect(await step(1, first, 0)).toBe('computed');
    const second = new SegmentWrites();
    lose.key = seg(2);
    expect(await step(2, second, 5000)).toBe('computed');
    expect(heads.filter((k) => k === seg(1)).length).toBeGreaterThan(0);
    await Promise.all([first.drain(), second.drain()]);
    lose.key = '';
    // Chunk 3's worker waits for segment 2, in vain, then rebuilds it.
    const warn = vi.spyOn(log, 'warn');
    const third = new SegmentWrites();
    try {
      expect(await step(3, third, 400)).toBe('computed');
      expect(heads.filter((k) => k === seg(2)).length).toBeGreaterThan(0);
      expect(warn).toHaveBeenCalledWith(expect.stringContaining('rebuilding it from its latents'), expect.objectContaining({ chunk: 2, reason: 'missing' }));
    } finally {
      warn.mockRestore();
    }
    await third.drain();
    expect(await step(4, new SegmentWrites(), 0)).toBe('finalized');
    const done = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(done.status).toBe('succeeded');
    expect(done.repairs?.map((r) => [r.object, r.from])).toEqual([['cache/000002.kv', 'latents']]);
    expectSameAsInMemory(await outputs(stack, job));
  }, 120_000);

  it('rebuilds a deleted or damaged segment from the stored latents: the same bytes, the same video', async () => {
    const stack = localStack(tempDir());
    const job = await submit(stack);
    const worker = new ChunkWorker({ ...stack, model, waitSec: 0.3, windowMemoBytes: 0 });
    const seg = (k: number | 'prefix') => cacheSegmentKey(job.tenant, job.id, k);
    // Chunks 0-2, then lose segment 1 (chunk 3's window needs it) and damage segment 0 (its rebuild needs that).
    for (let k = 0; k < 3; k++) expect(await worker.processNext()).toBe('computed');
    const original = { one: (await stack.store.get(seg(1)))!.body, zero: (await stack.store.get(seg(0)))!.body };
    await stack.store.delete(seg(1));
    const damaged = Buffer.from(original.zero);
    damaged[damaged.length - 5] ^= 0x40;
    await stack.store.put(seg(0), damaged);
    while ((await readJob(stack.store, job.tenant, job.id))!.job.status !== 'succeeded') expect(await worker.processNext()).toBeDefined();
    await worker.close();

    expect((await stack.store.get(seg(1)))!.body.equals(original.one)).toBe(true);
    expect((await stack.store.get(seg(0)))!.body.equals(original.zero)).toBe(true);
    const done = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(done.repairs?.map((r) => [r.object, r.from, r.lossy])).toEqual([['cache/000000.kv', 'latents', false], ['cache/000001.kv', 'latents', false]]);
    expectSameAsInMemory(await outputs(stack, job));
  }, 120_000);

  it('rebuilds a segment lost after the worker moved past it when the job finishes (from the starting frames for the prefix)', async () => {
    const stack = localStack(tempDir());
    const job = await submit(stack);
    const worker = new ChunkWorker({ ...stack, model, waitSec: 0.3 }); // keeps its window: never reads the segments back
    for (let k = 0; k < 2; k++) expect(await worker.processNext()).toBe('computed');
    const prefix = (await stack.store.get(cacheSegmentKey(job.tenant, job.id, 'prefix')))!.body;
    await stack.store.delete(cacheSegmentKey(job.tenant, job.id, 'prefix'));
    await stack.store.delete(latentsKey(job, -1));
    while ((await readJob(stack.store, job.tenant, job.id))!.job.status !== 'succeeded') expect(await worker.processNext()).toBeDefined();
    await worker.close();
    expect((await stack.store.get(cacheSegmentKey(job.tenant, job.id, 'prefix')))!.body.equals(prefix)).toBe(true);
    const done = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(done.repairs?.map((r) => [r.object, r.from])).toEqual([['cache/prefix.kv', 'input']]);
    expectSameAsInMemory(await outputs(stack, job));
  }, 120_000);

  it('fails the job, naming what is gone, when a lost segment\'s latents are damaged too', async () => {
    const stack = localStack(tempDir());
    const job = await submit(stack);
    const worker = new ChunkWorker({ ...stack, model, waitSec: 0.3, windowMemoBytes: 0 });
    for (let k = 0; k < 3; k++) expect(await worker.processNext()).toBe('computed');
    await stack.store.delete(cacheSegmentKey(job.tenant, job.id, 1));
    const latents = Buffer.from((await stack.store.get(latentsKey(job, 1)))!.body);
    latents[latents.length - 1] ^= 0x01;
    await stack.store.put(latentsKey(job, 1), latents);
    expect(await worker.processNext()).toBe('failed');
    await worker.close();
    const done = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(done.status).toBe('failed');
    expect(done.error?.code).toBe('cache_missing');
    expect(done.error?.message).toContain('latents of chunk 1');
  }, 60_000);

  it('makes the same bytes when a chunk\'s task runs again after a crash before the job advanced', async () => {
    const stack = localStack(tempDir());
    const job = await submit(stack);
    const worker = new ChunkWorker({ ...stack, model, waitSec: 0.3, windowMemoBytes: 0 });
    for (let k = 0; k < 3; k++) expect(await worker.processNext()).toBe('computed');
    await worker.close();
    const objects = [latentsKey(job, 2), frameKey(job.tenant, job.id, 2, 0), frameKey(job.tenant, job.id, 2, 1), cacheSegmentKey(job.tenant, job.id, 2)];
    const before = await Promise.all(objects.map(async (key) => (await stack.store.get(key))!.body));
    // As if the worker had died after storing chunk 2 and before recording it: the job says 2 chunks done.
    await updateJob(stack.store, job.tenant, job.id, (j) => { j.progress.chunks_done = 2; return j; });
    await Promise.all(objects.slice(0, 3).map((key) => stack.store.delete(key)));
    expect(await runChunkStep({ ...stack, model }, { job: job.id, tenant: job.tenant, chunk: 2 })).toBe('computed');
    const after = await Promise.all(objects.map(async (key) => (await stack.store.get(key))!.body));
    after.forEach((body, i) => expect(body.equals(before[i]), objects[i]).toBe(true));
  }, 60_000);
});

describe('continuing a stored video with a latent model', () => {
  const ctx = { tenant: 'tenant1', baseUrl: 'http://api.test' };
  const apiDeps = (stack: ReturnType<typeof localStack>) => ({ store: stack.store, chunkQueue: stack.chunkQueue, manifest: model.manifest, config: testConfig() });
  const l = () => model.manifest.chunk_frames;

  /** A finished video of FRAMES frames (the in-memory loop's, checked) on a fresh stack. */
  async function finishedVideo(): Promise<{ stack: ReturnType<typeof localStack>; parent: Job }> {
    const stack = localStack(tempDir());
    const parent = await submit(stack);
    await drainQueue(stack, model);
    expect((await readJob(stack.store, parent.tenant, parent.id))!.job.status).toBe('succeeded');
    return { stack, parent };
  }

  it.each([
    ['keeps its window', {}],
    ['reads every window from the store', { windowMemoBytes: 0 }],
  ])('a fork at a chunk boundary with the video\'s seed makes the video\'s own later chunks, bit for bit (the worker %s)', async (_, opts) => {
    const { stack, parent } = await finishedVideo();
    // Cut after chunk 1 (frame 4 of 9): chunks 2-4 of the video are chunks 0-2 of the fork, same noise, same window.
    const { job } = await createVideo(apiDeps(stack), ctx, { body: { frames: FRAMES - 2 * l(), seed: SEED, from: { video: parent.id, frame: 2 * l() } } });
    await drainQueue(stack, model, opts);
    const fork = (await readJob(stack.store, ctx.tenant, job.id))!.job;
    expect(fork.status).toBe('succeeded');
    expect(fork.repairs ?? []).toEqual([]);
    const got = await outputs(stack, fork);
    got.latents.forEach((z, k) => expect(z, `latents of chunk ${k}`).toEqual(expectedLatents(k + 2)));
    got.pngs.forEach((png, f) => expect(png.equals(expected.pngs[2 * l() + f]), `frame ${f}`).toBe(true));
    expect(fork.outputs.full).toBeDefined(); // the whole video, the frames it continues included
  }, 120_000);

  it('a fork of a fork, each at a chunk boundary with the first video\'s seed, still makes that video\'s later chunks (two hops up the lineage)', async () => {
    const { stack, parent } = await finishedVideo();
    const { job: first } = await createVideo(apiDeps(stack), ctx, { body: { frames: FRAMES - l(), seed: SEED, from: { video: parent.id, frame: l() } } });
    await drainQueue(stack, model, { windowMemoBytes: 0 });
    // The second cuts the first after its chunk 0: its window reaches back into the first video.
    const { job: second } = await createVideo(apiDeps(stack), ctx, { body: { frames: FRAMES - 2 * l(), seed: SEED, from: { video: first.id, frame: l() } } });
    await drainQueue(stack, model, { windowMemoBytes: 0 });
    const done = (await readJob(stack.store, ctx.tenant, second.id))!.job;
    expect(done.status).toBe('succeeded');
    expect(done.parent).toMatchObject({ id: first.id, start_frame: 1 + 2 * l(), chunk_offset: 2 });
    const got = await outputs(stack, done);
    got.latents.forEach((z, k) => expect(z, `latents of chunk ${k}`).toEqual(expectedLatents(k + 2)));
    got.pngs.forEach((png, f) => expect(png.equals(expected.pngs[2 * l() + f]), `frame ${f}`).toBe(true));
  }, 120_000);

  it('extends a video from its end, a last chunk cut short: that chunk\'s segment is made once from its latents, and every run makes the same bytes', async () => {
    const { stack, parent } = await finishedVideo();
    const last = cacheSegmentKey(parent.tenant, parent.id, CHUNKS - 1);
    expect(await stack.store.head(last)).toBeNull(); // nothing came after it
    const extend = async () => {
      const { job } = await extendVideo(apiDeps(stack), ctx, parent.id, { body: { frames: 3, seed: 3 } });
      await drainQueue(stack, model, { windowMemoBytes: 0 });
      const done = (await readJob(stack.store, ctx.tenant, job.id))!.job;
      expect(done.status).toBe('succeeded');
      expect(done.parent).toMatchObject({ id: parent.id, frames: FRAMES, start_frame: 1 + FRAMES, chunk_offset: CHUNKS });
      return outputs(stack, done);
    };
    const first = await extend();
    // The video's last chunk kept one of its two frames: its segment holds that frame.
    const seg = (await stack.store.get(last))!.body;
    expect(decodeSegmentHeader(seg).shape[0]).toBe(1);
    expect((await readJob(stack.store, parent.tenant, parent.id))!.job.repairs ?? []).toEqual([]); // made, not repaired
    // That frame's caches are the first frame's of the whole chunk (causal attention): a video one
    // chunk longer, same seed, has the same chunks 0-4 and stored segment 4 itself, both frames.
    const longer = await submit(stack, FRAMES + l());
    await drainQueue(stack, model);
    const m = model.manifest;
    const frameShape = [(m.prefix_cache ? 2 : 1) * m.depth, 2, 1, m.tokens_per_frame, m.width] as const;
    const cut = decodeSegment(seg, { modelSha: m.onnx_sha256, job: parent.id, chunk: CHUNKS - 1, frameShape }).data;
    const whole = decodeSegment((await stack.store.get(cacheSegmentKey(longer.tenant, longer.id, CHUNKS - 1)))!.body,
      { modelSha: m.onnx_sha256, job: longer.id, chunk: CHUNKS - 1, frameShape }).data;
    const scale = whole.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
    const diff = cut.reduce((a, v, i) => Math.max(a, Math.abs(v - whole[i])), 0);
    expect(cut.length).toBe(whole.length / 2);
    expect(diff).toBeLessThan(1e-3 * scale);
    // Made again after the segment is lost: the same segment, the same extension.
    await stack.store.delete(last);
    const second = await extend();
    expect((await stack.store.get(last))!.body.equals(seg)).toBe(true);
    second.pngs.forEach((png, f) => expect(png.equals(first.pngs[f]), `frame ${f}`).toBe(true));
    second.latents.forEach((z, k) => expect(z).toEqual(first.latents[k]));
    expect(first.pngs.length).toBe(3);
  }, 120_000);
});

/** The in-memory loop's latents of chunk k. */
function expectedLatents(k: number): Float32Array {
  const m = model.manifest;
  const per = m.latent.channels * m.latent.height * m.latent.width;
  const from = (1 + k * m.chunk_frames) * per;
  return expected.latents.subarray(from, from + m.chunk_frames * per);
}
