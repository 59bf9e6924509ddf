import { describe, expect, it } from 'vitest';
import { ModelSession } from '../../gpu-worker/model-session.js';
import { ChunkWorker } from '../../gpu-worker/worker.js';
import { readJob } from '../../shared/jobs/job-store.js';
import { cacheSegmentKey, frameKey } from '../../shared/keys.js';
import { pngsToFrames } from '../../shared/media/png.js';
import type { ObjectStore } from '../../shared/store/object-store.js';
import { localStack, MODEL_DIR, submitJob, tempDir } from './fixtures.js';

const CHUNKS = 5;
const model = await ModelSession.open(MODEL_DIR);
const m = model.manifest;
const l = m.chunk_frames;
const geometry = { channels: m.frame.channels, height: m.frame.height, width: m.frame.width, range: m.frame.range } as const;

async function framesOf(store: ObjectStore, job: { tenant: string; id: string }, k: number): Promise<Float32Array> {
  const pngs = await Promise.all(Array.from({ length: l }, async (_, i) => (await store.get(frameKey(job.tenant, job.id, k, i)))!.body));
  return pngsToFrames(pngs, geometry);
}

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((d, v, i) => Math.max(d, Math.abs(v - b[i])), 0);

/** The uninterrupted run: one worker, segments stored before the job advances. */
async function uninterruptedRun(request: Parameters<typeof submitJob>[2]) {
  const ref = localStack(tempDir());
  const refJob = await submitJob(ref, m, request);
  const refWorker = new ChunkWorker({ ...ref, model, waitSec: 0.2 });
  while ((await refWorker.processNext()) === 'computed');
  await refWorker.close();
  return { ref, refJob };
}

describe('a worker that dies while a segment is still being stored in the background', () => {
  it('leaves a job that the next worker finishes: the segment rebuilt from its clean copy, byte for byte, every frame identical', async () => {
    const request = { id: 'deferred', frames: CHUNKS * l, steps: 2, seed: 9, label: 2 };
    const { ref, refJob } = await uninterruptedRun(request);

    // Worker A stores every segment in the background; segment 2's write never lands (A dies).
    const stack = localStack(tempDir());
    const job = await submitJob(stack, m, request);
    const lost = cacheSegmentKey(job.tenant, job.id, 2);
    const dying = new Proxy(stack.store, {
      get(target, prop, receiver) {
        if (prop !== 'put') return Reflect.get(target, prop, receiver);
        return (key: string, ...rest: never[]) => (key === lost ? new Promise(() => {}) : (target.put as (...a: unknown[]) => unknown)(key, ...rest));
      },
    });
    const a = new ChunkWorker({ ...stack, store: dying, model, waitSec: 0.2, deferSegmentBytes: 0 });
    for (let k = 0; k <= 2; k++) expect(await a.processNext()).toBe('computed');
    // Chunk 2 is recorded and chunk 3 queued, while its segment is not stored: A is gone (never closed).
    expect((await readJob(stack.store, job.tenant, job.id))!.job.progress.chunks_done).toBe(3);
    expect(await stack.store.head(lost)).toBeNull();

    // Worker B has never seen the job: it waits briefly for the segment, then rebuilds it.
    const b = new ChunkWorker({ ...stack, model, waitSec: 0.2, deferSegmentBytes: 0, segmentWaitMs: 300 });
    while ((await b.processNext()) === 'computed');
    await b.close();
    const done = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(done.status).toBe('succeeded');
    expect(await stack.store.head(lost)).not.toBeNull();
    // The lost segment is rebuilt from chunk 2's lossless clean copy (clean-copy.ts): the same K/V,
    // so every chunk, before and after the loss, is the uninterrupted run's, value for value.
    for (let k = 0; k < CHUNKS; k++) expect(maxDiff(await framesOf(stack.store, job, k), await framesOf(ref.store, refJob, k)), `chunk ${k}`).toBe(0);
    const repaired = await stack.store.get(lost);
    const reference = await ref.store.get(cacheSegmentKey(refJob.tenant, refJob.id, 2));
    expect(repaired!.body.equals(reference!.body)).toBe(true);
  }, 240_000);

  it('dies during the t = 0 pass, after the job advanced: the next worker rebuilds the segment and the frames are the same', async () => {
    const request = { id: 'midpass', frames: CHUNKS * l, steps: 2, seed: 9, label: 2 };
    const { ref, refJob } = await uninterruptedRun(request);

    // Worker A's t = 0 pass over chunk 2 never ends (A dies in it); its denoising calls run as usual.
    const stack = localStack(tempDir());
    const job = await submitJob(stack, m, request);
    const stuck = new Proxy(model, {
      get(target, prop, receiver) {
        if (prop !== 'step') return Reflect.get(target, prop, receiver);
        return (input: { pos: number }, fetch?: string) => (fetch === 'kv' && input.pos === 2 * l ? new Promise(() => {}) : target.step(input as never, fetch as never));
      },
    });
    const a = new ChunkWorker({ ...stack, model: stuck, waitSec: 0.2, deferSegmentBytes: 0 });
    for (let k = 0; k < 2; k++) expect(await a.processNext()).toBe('computed');
    void a.processNext(); // chunk 2: never returns
    // Chunk 2 is recorded, its task deleted and chunk 3's sent while the pass is still running.
    const deadline = Date.now() + 60_000;
    while ((await readJob(stack.store, job.tenant, job.id))!.job.progress.chunks_done < 3) {
      if (Date.now() > deadline) throw new Error('chunk 2 was never recorded');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await stack.store.head(cacheSegmentKey(job.tenant, job.id, 2))).toBeNull();

    const b = new ChunkWorker({ ...stack, model, waitSec: 0.2, deferSegmentBytes: 0, segmentWaitMs: 300 });
    while ((await b.processNext()) === 'computed');
    await b.close();
    const done = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(done.status).toBe('succeeded');
    expect(done.repairs?.map((r) => r.object)).toEqual(['cache/000002.kv']);
    for (let k = 0; k < CHUNKS; k++) expect(maxDiff(await framesOf(stack.store, job, k), await framesOf(ref.store, refJob, k)), `chunk ${k}`).toBe(0);
  }, 240_000);
});
