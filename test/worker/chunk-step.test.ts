import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelSession } from '../../gpu-worker/model-session.js';
import { readJob, updateJob } from '../../shared/jobs/job-store.js';
import { frameKey, previewGifKey, videoKey } from '../../shared/keys.js';
import { framesToPngs, pngsToFrames } from '../../shared/media/png.js';
import { drainQueue, FRAME_FLOATS, GEOMETRY, localStack, MODEL_DIR, submitJob, tempDir, watchingSteps } from './fixtures.js';

let model: ModelSession;
beforeAll(async () => { model = await ModelSession.open(MODEL_DIR); });
afterAll(async () => { await model.release(); });

const drain = (stack: ReturnType<typeof localStack>) => drainQueue(stack, model);

describe('chunk step on the embedded store and queue', () => {
  it('makes a whole video chunk by chunk: segments, frames, outputs, progress, events', async () => {
    const stack = localStack(tempDir());
    const init = framesToPngs(new Float32Array(4 * FRAME_FLOATS).fill(-1), GEOMETRY);
    const l = model.manifest.chunk_frames;
    const frames = 2 * l + 2;
    const job = await submitJob(stack, model.manifest, { frames, steps: 3, initPngs: init, webhook: 'https://example.com/hook' });
    const events = await drain(stack);
    expect(events.map((e) => e.outcome)).toEqual(['computed', 'computed', 'finalized']);
    const done = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(done.status).toBe('succeeded');
    expect(done.progress).toEqual({ chunks_done: 3, chunks_total: 3, frames_done: frames, frames_total: frames });
    expect(done.metrics.chunk_seconds).toHaveLength(3);
    // Segments for the starting frames and every chunk but the last (nothing reads that one).
    const keys = await stack.store.list(`jobs/${job.tenant}/${job.id}/cache/`);
    expect(keys.map((k) => path.basename(k))).toEqual(['000000.kv', '000001.kv', 'prefix.kv']);
    // Only the requested frames are kept: l + l + 2.
    expect(await stack.store.list(`jobs/${job.tenant}/${job.id}/frames/`)).toHaveLength(frames);
    expect(await stack.store.head(frameKey(job.tenant, job.id, 2, 1))).not.toBeNull();
    expect(await stack.store.head(frameKey(job.tenant, job.id, 2, 2))).toBeNull();
    const mp4 = (await stack.store.get(videoKey(job.tenant, job.id)))!.body;
    expect(mp4.subarray(4, 8).toString('latin1')).toBe('ftyp');
    expect((await stack.store.get(previewGifKey(job.tenant, job.id)))!.body.subarray(0, 6).toString('latin1')).toBe('GIF89a');
    // Webhook events: start, one output per chunk, completed.
    const types: string[] = [];
    for (;;) {
      const [m] = await stack.webhookQueue.receive({ max: 1, visibilitySec: 30 });
      if (!m) break;
      types.push(JSON.parse(m.body).type);
      await stack.webhookQueue.delete(m.receiptHandle);
    }
    expect(types).toEqual(['start', 'output', 'output', 'output', 'completed']);
  });

  it('makes only the frames a short last chunk keeps, the same frames as a longer request', async () => {
    const l = model.manifest.chunk_frames;
    const framesSeen: number[] = [];
    const short = localStack(tempDir()), full = localStack(tempDir());
    await submitJob(short, model.manifest, { id: 'v', frames: l + 1, steps: 3, seed: 9 });
    await watchingSteps(model, (input, fetch) => { if (fetch === 'prediction') framesSeen.push(input.frames); }, () => drain(short));
    // Chunk 0 denoises l frames, chunk 1 (the last) only the one frame the request keeps.
    expect(framesSeen).toEqual([...Array(3).fill(l), ...Array(3).fill(1)]);
    await submitJob(full, model.manifest, { id: 'v', frames: 2 * l, steps: 3, seed: 9 });
    await drain(full);
    const frame = async (s: typeof short) => pngsToFrames([(await s.store.get(frameKey('tenant1', 'v', 1, 0)))!.body], GEOMETRY);
    const [a, b] = [await frame(short), await frame(full)];
    // Causal attention: the same frame up to float rounding (at most one 8-bit step after PNG).
    expect(a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0)).toBeLessThanOrEqual(2 / 255 + 1e-6);
    expect(await short.store.head(frameKey('tenant1', 'v', 1, 1))).toBeNull();
  });

  it('is idempotent: a redelivered task changes nothing and is deleted', async () => {
    const stack = localStack(tempDir());
    const job = await submitJob(stack, model.manifest, { frames: 8, steps: 2 });
    await drain(stack);
    const before = await readJob(stack.store, job.tenant, job.id);
    const frame = (await stack.store.get(frameKey(job.tenant, job.id, 1, 0)))!.etag;
    // A late duplicate of chunk 1 (as SQS at-least-once delivery may hand out).
    await stack.chunkQueue.send(JSON.stringify({ job: job.id, tenant: job.tenant, chunk: 1 }), { groupId: job.id, dedupId: 'dup' });
    const events = await drain(stack);
    expect(events.map((e) => e.outcome)).toEqual(['skipped']);
    expect((await readJob(stack.store, job.tenant, job.id))!.etag).toBe(before!.etag);
    expect((await stack.store.get(frameKey(job.tenant, job.id, 1, 0)))!.etag).toBe(frame);
  });

  it('does not finalize a job that failed while its last chunk was being made', async () => {
    const stack = localStack(tempDir());
    const l = model.manifest.chunk_frames;
    const job = await submitJob(stack, model.manifest, { frames: l + 1, steps: 2 });
    // The dead-letter handler fails the job while the last chunk denoises (its task ran too long).
    const step = model.step.bind(model);
    let failed = false;
    model.step = (async (input: Parameters<typeof step>[0], fetch?: Parameters<typeof step>[1]) => {
      if (input.frames === 1 && !failed) {
        failed = true;
        await updateJob(stack.store, job.tenant, job.id, (j) => ({ ...j, status: 'failed', error: { code: 'max_receives', message: 'dead-lettered' } }));
      }
      return fetch ? step(input, fetch) : step(input);
    }) as typeof model.step;
    let events;
    try { events = await drain(stack); } finally { model.step = step; }
    expect(failed).toBe(true);
    expect(events.map((e) => e.outcome)).toEqual(['computed', 'skipped']);
    const after = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(after.status).toBe('failed');
    expect(after.progress.chunks_done).toBe(1);
    expect(await stack.store.head(videoKey(job.tenant, job.id))).toBeNull();
    expect(await stack.store.head(previewGifKey(job.tenant, job.id))).toBeNull();
  });

  it('gives the same frames for the same seed, and other frames for another seed', async () => {
    const a = localStack(tempDir()), b = localStack(tempDir()), c = localStack(tempDir());
    const ja = await submitJob(a, model.manifest, { id: 'same', frames: 8, steps: 3, seed: 11 });
    await submitJob(b, model.manifest, { id: 'same', frames: 8, steps: 3, seed: 11 });
    await submitJob(c, model.manifest, { id: 'same', frames: 8, steps: 3, seed: 12 });
    await Promise.all([drain(a), drain(b), drain(c)]);
    const last = model.manifest.chunk_frames - 1;
    const frame = async (s: typeof a) => (await s.store.get(frameKey(ja.tenant, 'same', 1, last)))!.body;
    expect((await frame(a)).equals(await frame(b))).toBe(true);
    expect((await frame(a)).equals(await frame(c))).toBe(false);
  });

  it('stops a canceled job at the next chunk boundary', async () => {
    const stack = localStack(tempDir());
    const job = await submitJob(stack, model.manifest, { frames: 12, steps: 2 });
    await updateJob(stack.store, job.tenant, job.id, (j) => ({ ...j, cancel_requested: true }));
    const events = await drain(stack);
    expect(events.map((e) => e.outcome)).toEqual(['canceled']);
    const done = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(done.status).toBe('canceled');
    expect(await stack.store.list(`jobs/${job.tenant}/${job.id}/frames/`)).toHaveLength(0);
  });

  it('fails a job accepted for another model instead of finishing it with this one', async () => {
    const stack = localStack(tempDir());
    const job = await submitJob(stack, model.manifest, { frames: 8, steps: 2 });
    await updateJob(stack.store, job.tenant, job.id, (j) => ({ ...j, model: { name: 'older', sha256: 'e'.repeat(64) } }));
    expect((await drain(stack)).map((e) => e.outcome)).toEqual(['failed']);
    const done = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(done.error).toMatchObject({ code: 'model_mismatch' });
    expect(done.error?.message).toContain(model.manifest.onnx_sha256);
    expect(await stack.store.list(`jobs/${job.tenant}/${job.id}/frames/`)).toHaveLength(0);
  });

  it('finishes a job in the chunk length it was accepted with, and fails one longer than the model serves', async () => {
    const m = model.manifest;
    const trained = m.trained_chunk_frames ?? m.chunk_frames;
    // A job from before jobs recorded their chunk length: accepted in the trained length.
    const old = localStack(tempDir());
    const job = await submitJob(old, m, { frames: 2 * trained, steps: 2 });
    await updateJob(old.store, job.tenant, job.id, (j) => {
      const { chunk_frames: _, ...accepted } = j.model;
      return { ...j, model: accepted, progress: { ...j.progress, chunks_total: 2 } };
    });
    expect((await drain(old)).map((e) => e.outcome)).toEqual(['computed', 'finalized']);
    const done = (await readJob(old.store, job.tenant, job.id))!.job;
    expect(done.status).toBe('succeeded');
    expect(await old.store.list(`jobs/${job.tenant}/${job.id}/frames/`)).toHaveLength(2 * trained);
    expect(await old.store.head(frameKey(job.tenant, job.id, 1, trained - 1))).not.toBeNull();
    // Longer than the trained chunk: frames the model never learned to make together.
    const long = localStack(tempDir());
    const other = await submitJob(long, m, { frames: 8, steps: 2 });
    await updateJob(long.store, other.tenant, other.id, (j) => ({ ...j, model: { ...j.model, chunk_frames: trained + 1 } }));
    expect((await drain(long)).map((e) => e.outcome)).toEqual(['failed']);
    const failed = (await readJob(long.store, other.tenant, other.id))!.job;
    expect(failed.error).toMatchObject({ code: 'model_mismatch' });
    expect(failed.error?.message).toContain(`chunks of ${trained + 1} frames`);
    expect(await long.store.list(`jobs/${other.tenant}/${other.id}/frames/`)).toHaveLength(0);
  });

  it('fails a job whose starting frames exceed the model window', async () => {
    const stack = localStack(tempDir());
    const n = model.manifest.p_max + 1;
    const init = framesToPngs(new Float32Array(n * FRAME_FLOATS), GEOMETRY);
    const job = await submitJob(stack, model.manifest, { frames: 4, steps: 2, initPngs: init });
    expect((await drain(stack)).map((e) => e.outcome)).toEqual(['failed']);
    const done = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(done.error).toMatchObject({ code: 'bad_request' });
  });
});
