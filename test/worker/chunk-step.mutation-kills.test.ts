// The chunk step's bookkeeping, chunk by chunk through runChunkStep: what each chunk records on the
// job (started_at once, frames_done, chunk seconds, the queue wait of chunk 0 only), what it
// returns, and what a redelivered earlier chunk does.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChunkStep, type ChunkDeps } from '../../gpu-worker/chunk-step.js';
import { ModelSession } from '../../gpu-worker/model-session.js';
import { readJob, updateJob } from '../../shared/jobs/job-store.js';
import { ChunkTaskSchema, type ChunkTask } from '../../shared/schemas/chunk-task.js';
import { localStack, MODEL_DIR, submitJob, tempDir } from './fixtures.js';

let model: ModelSession;
beforeAll(async () => { model = await ModelSession.open(MODEL_DIR); });
afterAll(async () => { await model.release(); });

/** Takes every chunk task waiting in the queue. */
async function takeTasks(stack: ReturnType<typeof localStack>): Promise<ChunkTask[]> {
  const out: ChunkTask[] = [];
  for (;;) {
    const [m] = await stack.chunkQueue.receive({ max: 1, visibilitySec: 30 });
    if (!m) return out;
    out.push(ChunkTaskSchema.parse(JSON.parse(m.body)));
    await stack.chunkQueue.delete(m.receiptHandle);
  }
}

describe('runChunkStep bookkeeping', () => {
  it('records each chunk on the job and returns what happened', async () => {
    const stack = localStack(tempDir());
    const deps: ChunkDeps = { ...stack, model };
    const l = model.manifest.chunk_frames;
    const frames = 2 * l + 1;
    const job = await submitJob(stack, model.manifest, { frames, steps: 2, webhook: 'https://example.com/hook' });
    // Accepted 10 s ago: chunk 0 waited that long in the queue.
    await updateJob(stack.store, job.tenant, job.id, (j) => ({ ...j, created_at: new Date(Date.now() - 10_000).toISOString() }));
    expect(await takeTasks(stack)).toHaveLength(1);

    const before0 = Date.now();
    expect(await runChunkStep(deps, { job: job.id, tenant: job.tenant, chunk: 0 })).toBe('computed');
    const after0 = Date.now();
    const j0 = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(j0.status).toBe('processing');
    expect(j0.progress).toMatchObject({ chunks_done: 1, frames_done: l });
    const started = Date.parse(j0.started_at!);
    expect(started).toBeGreaterThanOrEqual(before0 - 1);
    expect(started).toBeLessThanOrEqual(after0 + 1);
    const [s0] = j0.metrics.chunk_seconds;
    expect(s0).toBeGreaterThan(0);
    expect(Math.round(s0 * 1000)).toBe(s0 * 1000); // milliseconds
    // The wait is the time from acceptance to the chunk's start: 10 s, less nothing of the chunk itself.
    expect(j0.metrics.queue_wait_s).toBeGreaterThanOrEqual(9.9);
    expect(j0.metrics.queue_wait_s).toBeLessThanOrEqual(10 + (before0 - Date.parse(job.created_at)) / 1000 + 1);
    expect(Math.round(j0.metrics.queue_wait_s! * 1000)).toBe(j0.metrics.queue_wait_s! * 1000);
    expect(await takeTasks(stack)).toEqual([expect.objectContaining({ job: job.id, chunk: 1 })]);

    expect(await runChunkStep(deps, { job: job.id, tenant: job.tenant, chunk: 1 })).toBe('computed');
    const j1 = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(j1.started_at).toBe(j0.started_at); // set once
    expect(j1.metrics.queue_wait_s).toBe(j0.metrics.queue_wait_s); // chunk 0's only
    expect(j1.progress).toMatchObject({ chunks_done: 2, frames_done: 2 * l });
    expect(j1.metrics.chunk_seconds).toHaveLength(2);
    expect(await takeTasks(stack)).toEqual([expect.objectContaining({ job: job.id, chunk: 2 })]);

    // A late duplicate of chunk 0: nothing recorded, chunk 1's successor sent again (deduplicated).
    expect(await runChunkStep(deps, { job: job.id, tenant: job.tenant, chunk: 0 })).toBe('skipped');
    expect((await readJob(stack.store, job.tenant, job.id))!.job.progress.chunks_done).toBe(2);

    expect(await runChunkStep(deps, { job: job.id, tenant: job.tenant, chunk: 2 })).toBe('finalized');
    const j2 = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(j2.status).toBe('succeeded');
    expect(j2.progress).toMatchObject({ chunks_done: 3, frames_done: frames }); // the last chunk keeps 1 frame
    expect(j2.started_at).toBe(j0.started_at);

    // Events: start once (chunk 0), an output per chunk with its number, completed.
    const events: { type: string; chunk?: number }[] = [];
    for (;;) {
      const [m] = await stack.webhookQueue.receive({ max: 1, visibilitySec: 30 });
      if (!m) break;
      const { type, chunk } = JSON.parse(m.body);
      events.push({ type, chunk });
      await stack.webhookQueue.delete(m.receiptHandle);
    }
    expect(events).toEqual([{ type: 'start' }, { type: 'output', chunk: 0 }, { type: 'output', chunk: 1 }, { type: 'output', chunk: 2 }, { type: 'completed' }]);

    // A task of a finished job only repeats the (deduplicated) completion event.
    expect(await runChunkStep(deps, { job: job.id, tenant: job.tenant, chunk: 2 })).toBe('skipped');
  });

  it('counts no negative queue wait for a job whose clock ran ahead', async () => {
    const stack = localStack(tempDir());
    const job = await submitJob(stack, model.manifest, { frames: model.manifest.chunk_frames + 1, steps: 2 });
    await updateJob(stack.store, job.tenant, job.id, (j) => ({ ...j, created_at: new Date(Date.now() + 60_000).toISOString() }));
    expect(await runChunkStep({ ...stack, model }, { job: job.id, tenant: job.tenant, chunk: 0 })).toBe('computed');
    expect((await readJob(stack.store, job.tenant, job.id))!.job.metrics.queue_wait_s).toBe(0);
  });
});
