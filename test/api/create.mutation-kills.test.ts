// createVideo / extendVideo as stored: the job record's defaults, the Idempotency-Key's limits and
// fingerprint, a replay that finishes a half-made job, and a continuation's checks and offsets.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ContinuationConflictError, IdempotencyConflictError, NotFoundError, ValidationError } from '../../shared/api/errors.js';
import type { ApiDeps, CallContext } from '../../shared/api/types.js';
import { createVideo, extendVideo } from '../../shared/api/videos.js';
import { readJob, updateJob } from '../../shared/jobs/job-store.js';
import { WEBHOOK_EVENT_TYPES } from '../../shared/schemas/webhook-event.js';
import { drainTasks, type TempStack, tempStack, testConfig, testManifest } from './helpers.js';

let stack: TempStack;
let deps: ApiDeps;
const ctx: CallContext = { tenant: 'tenant1', baseUrl: 'http://api.test' };
const NOW = new Date('2026-03-04T05:06:07.000Z');
beforeEach(async () => {
  stack = await tempStack();
  deps = { store: stack.store, chunkQueue: stack.chunkQueue, manifest: testManifest(), config: testConfig(), now: () => NOW };
});
afterEach(() => stack.cleanup());

const tasks = () => drainTasks(stack.chunkQueue);

async function rejection(p: Promise<unknown>) {
  return p.then(() => { throw new Error('resolved'); }, (e: Error & { field?: string }) => e);
}

const stored = async (id: string) => (await readJob(stack.store, ctx.tenant, id))!.job;

describe('createVideo: the job it records', () => {
  it('fills in the model defaults and the request as validated', async () => {
    const { job, created } = await createVideo(deps, ctx, { body: { frames: 10, seed: 5 } });
    expect(created).toBe(true);
    const j = await stored(job.id);
    expect(j).toMatchObject({
      tenant: 'tenant1', status: 'starting', cancel_requested: false,
      request: { frames: 10, seed: 5, guidance: 2, steps: 25, init_frames: { count: 0, keys: [] }, webhook_events_filter: [...WEBHOOK_EVENT_TYPES] },
      model: { name: 'test-model', sha256: 'a'.repeat(64), chunk_frames: 4 },
      progress: { chunks_done: 0, chunks_total: 3, frames_done: 0, frames_total: 10 },
      created_at: NOW.toISOString(), updated_at: NOW.toISOString(), metrics: { chunk_seconds: [] }, outputs: {},
    });
    expect(j.request.label).toBeUndefined();
    expect(j.request.webhook).toBeUndefined();
    expect(j.idempotency_key).toBeUndefined();
    expect(j.parent).toBeUndefined();
    expect(job.id).toMatch(/^vid_[0-9a-f]{24}$/);
  });

  it('records what the request asked for instead of the defaults', async () => {
    const body = { frames: 8, seed: 0, label: '3 balls', guidance: 1.5, steps: 7, webhook: 'http://127.0.0.1:9/h', webhook_events_filter: ['completed'] };
    const { job } = await createVideo(deps, ctx, { body });
    expect((await stored(job.id)).request).toMatchObject({ label: 2, guidance: 1.5, steps: 7, seed: 0, webhook: 'http://127.0.0.1:9/h', webhook_events_filter: ['completed'] });
  });

  it('draws a seed when none is given', async () => {
    const seeds = new Set<number>();
    for (let i = 0; i < 3; i++) seeds.add((await stored((await createVideo(deps, ctx, { body: { frames: 4 } })).job.id)).request.seed);
    expect(seeds.size).toBe(3);
  });

  it('lists the job, marks it active and queues chunk 0', async () => {
    const { job } = await createVideo(deps, ctx, { body: { frames: 4, seed: 1 } });
    expect((await stack.store.list('')).filter((k) => !k.startsWith(`jobs/${ctx.tenant}/${job.id}/`)).length).toBeGreaterThanOrEqual(2);
    expect(await tasks()).toEqual([expect.objectContaining({ job: job.id, tenant: 'tenant1', chunk: 0 })]);
  });
});

describe('createVideo: Idempotency-Key', () => {
  it('takes a key of 1 to 256 characters', async () => {
    const long = await rejection(createVideo(deps, ctx, { body: { frames: 4 }, idempotencyKey: 'k'.repeat(257) }));
    expect(long).toBeInstanceOf(ValidationError);
    expect(long.message).toBe('Idempotency-Key must be 1-256 characters');
    expect(long.field).toBe('Idempotency-Key');
    const empty = await rejection(createVideo(deps, ctx, { body: { frames: 4 }, idempotencyKey: '' }));
    expect(empty).toBeInstanceOf(ValidationError);
    expect(empty.field).toBe('Idempotency-Key');
    const ok = await createVideo(deps, ctx, { body: { frames: 4 }, idempotencyKey: 'k'.repeat(256) });
    expect((await stored(ok.job.id)).idempotency_key).toBe('k'.repeat(256));
  });

  it('names the field when a body id and the header differ', async () => {
    const err = await rejection(createVideo(deps, ctx, { body: { frames: 4, id: 'a-1' }, idempotencyKey: 'b-2' }));
    expect(err.message).toBe('id and the Idempotency-Key header differ; send one, or the same value in both');
    expect(err.field).toBe('id');
  });

  it('derives the job id from tenant and key: the same for a repeat, not random', async () => {
    const a = await createVideo(deps, ctx, { body: { frames: 4, seed: 1 }, idempotencyKey: 'order-1' });
    await stack.cleanup();
    stack = await tempStack();
    deps = { ...deps, store: stack.store, chunkQueue: stack.chunkQueue };
    const b = await createVideo(deps, ctx, { body: { frames: 4, seed: 1 }, idempotencyKey: 'order-1' });
    expect(b.job.id).toBe(a.job.id);
    expect(b.created).toBe(true);
  });

  it('takes the same body with its keys in another order as the same request', async () => {
    const a = await createVideo(deps, ctx, { body: { frames: 4, seed: 1, guidance: 1.5, steps: 3 }, idempotencyKey: 'k1' });
    const b = await createVideo(deps, ctx, { body: { steps: 3, guidance: 1.5, seed: 1, frames: 4 }, idempotencyKey: 'k1' });
    expect(b).toMatchObject({ created: false, job: { id: a.job.id } });
  });

  it('refuses the key with a different body (409 on the key), and with the filter in another order', async () => {
    await createVideo(deps, ctx, { body: { frames: 4, seed: 1, webhook: 'http://127.0.0.1:9/h', webhook_events_filter: ['start', 'completed'] }, idempotencyKey: 'k2' });
    for (const body of [
      { frames: 4, seed: 2, webhook: 'http://127.0.0.1:9/h', webhook_events_filter: ['start', 'completed'] },
      { frames: 4, seed: 1, webhook: 'http://127.0.0.1:9/h', webhook_events_filter: ['completed', 'start'] },
    ]) {
      const err = await rejection(createVideo(deps, ctx, { body, idempotencyKey: 'k2' }));
      expect(err).toBeInstanceOf(IdempotencyConflictError);
      expect(err.message).toBe('this idempotency key was already used with a different request body');
      expect(err.field).toBe('Idempotency-Key');
    }
  });

  it('a replay of a job still starting finishes its creation: chunk 0 queued once', async () => {
    const body = { frames: 4, seed: 1 };
    // The first try wrote job.json and then died before queuing chunk 0.
    const dying = Object.create(stack.chunkQueue) as typeof stack.chunkQueue;
    dying.send = () => Promise.reject(new Error('crash'));
    await expect(createVideo({ ...deps, chunkQueue: dying }, ctx, { body, idempotencyKey: 'k3' })).rejects.toThrow('crash');
    expect(await tasks()).toEqual([]);
    const again = await createVideo(deps, ctx, { body, idempotencyKey: 'k3' });
    expect(again.created).toBe(false);
    expect((await tasks()).map((t) => t.job)).toEqual([again.job.id]);
  });

  it('a replay of a job already running queues nothing again', async () => {
    const body = { frames: 4, seed: 1 };
    const first = await createVideo(deps, ctx, { body, idempotencyKey: 'k4' });
    expect(await tasks()).toHaveLength(1);
    await updateJob(stack.store, ctx.tenant, first.job.id, (j) => ({ ...j, status: 'processing' }));
    expect((await createVideo(deps, ctx, { body, idempotencyKey: 'k4' })).created).toBe(false);
    expect(await tasks()).toEqual([]);
  });
});

describe('extendVideo: the video it continues', () => {
  async function finished(frames = 10) {
    const { job } = await createVideo(deps, ctx, { body: { frames, seed: 9, label: 1, guidance: 1.5, steps: 6 } });
    await updateJob(stack.store, ctx.tenant, job.id, (j) => ({ ...j, status: 'succeeded' }));
    await tasks();
    return job.id;
  }

  it('keeps the video\'s seed, label, guidance and steps, and starts where it ended', async () => {
    const id = await finished(10);
    const { job } = await extendVideo(deps, ctx, id, { body: { frames: 8 } });
    const j = await stored(job.id);
    expect(j.request).toMatchObject({ seed: 9, label: 1, guidance: 1.5, steps: 6, frames: 8 });
    expect(j.parent).toEqual({ id, frames: 10, start_frame: 10, chunk_offset: 3 });
    expect(j.progress.chunks_total).toBe(2);
  });

  it('continues from a chunk boundary inside the video (from.frame)', async () => {
    const id = await finished(10);
    const { job } = await createVideo(deps, ctx, { body: { frames: 4, from: { video: id, frame: 8 } } });
    expect((await stored(job.id)).parent).toEqual({ id, frames: 8, start_frame: 8, chunk_offset: 2 });
  });

  it('refuses a cut that is not on a chunk boundary, past the end, or of an unfinished video', async () => {
    const id = await finished(10);
    for (const frame of [6, 11]) {
      const err = await rejection(createVideo(deps, ctx, { body: { frames: 4, from: { video: id, frame } } }));
      expect(err).toBeInstanceOf(ValidationError);
      expect(err.field).toBe('from.frame');
      expect(err.message).toBe('from.frame: must be at most 10 (the video\'s length) and a multiple of 4 (its chunk length, where its cache is stored) or 10 itself');
    }
    const { job } = await createVideo(deps, ctx, { body: { frames: 4 } });
    const running = await rejection(extendVideo(deps, ctx, job.id, { body: { frames: 4 } }));
    expect(running).toBeInstanceOf(ContinuationConflictError);
    expect(running.message).toBe(`video ${job.id} is starting; only a succeeded video can be continued`);
    expect(running.field).toBe('id');
  });

  it('refuses conditioning of its own, and another tenant\'s video', async () => {
    const id = await finished(8);
    for (const field of ['guidance', 'steps'] as const) {
      const err = await rejection(extendVideo(deps, ctx, id, { body: { frames: 4, [field]: 3 } }));
      expect(err).toBeInstanceOf(ValidationError);
      expect(err.field).toBe(field);
    }
    const other = await rejection(extendVideo(deps, { ...ctx, tenant: 'tenant2' }, id, { body: { frames: 4 } }));
    expect(other).toBeInstanceOf(NotFoundError);
  });

  it('refuses a video made by another model', async () => {
    const id = await finished(8);
    const err = await rejection(extendVideo({ ...deps, manifest: testManifest({ onnx_sha256: 'b'.repeat(64) }) }, ctx, id, { body: { frames: 4 } }));
    expect(err).toBeInstanceOf(ContinuationConflictError);
    expect(err.message).toContain(`was made by model test-model (${'a'.repeat(64)})`);
  });

  it('takes the same key again for the same continuation, and refuses it for another video', async () => {
    const a = await finished(8);
    const b = await finished(8);
    const first = await extendVideo(deps, ctx, a, { body: { frames: 4 }, idempotencyKey: 'ext-1' });
    expect((await extendVideo(deps, ctx, a, { body: { frames: 4 }, idempotencyKey: 'ext-1' })).job.id).toBe(first.job.id);
    expect(await rejection(extendVideo(deps, ctx, b, { body: { frames: 4 }, idempotencyKey: 'ext-1' }))).toBeInstanceOf(IdempotencyConflictError);
  });
});
