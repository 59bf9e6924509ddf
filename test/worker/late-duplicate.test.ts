// A duplicate of chunk k (SQS delivers at least once) that is still denoising while another worker
// records chunk k and then chunk k+1 must not rewind the job or announce chunk k a second time.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChunkStep, type ChunkDeps } from '../../gpu-worker/chunk-step.js';
import { ModelSession, type StepFetch, type StepInput } from '../../gpu-worker/model-session.js';
import { readJob } from '../../shared/jobs/job-store.js';
import type { TaskQueue } from '../../shared/queue/task-queue.js';
import { localStack, MODEL_DIR, submitJob, tempDir } from './fixtures.js';

let model: ModelSession;
beforeAll(async () => { model = await ModelSession.open(MODEL_DIR); });
afterAll(async () => { await model.release(); });

describe('a late duplicate of chunk k', () => {
  it('leaves chunks_done where the job got to and sends no second output event', async () => {
    const stack = localStack(tempDir());
    const l = model.manifest.chunk_frames;
    const job = await submitJob(stack, model.manifest, { frames: 4 * l, steps: 2, webhook: 'https://example.com/hook' });
    // Every webhook event the chunk step sends (before the queue's deduplication hides repeats).
    const sent: { type: string; chunk?: number }[] = [];
    const webhookQueue: TaskQueue = Object.assign(Object.create(stack.webhookQueue) as TaskQueue, {
      send: (body: string, o: Parameters<TaskQueue['send']>[1]) => {
        const { type, chunk } = JSON.parse(body);
        sent.push({ type, chunk });
        return stack.webhookQueue.send(body, o);
      },
    });
    const deps: ChunkDeps = { store: stack.store, chunkQueue: stack.chunkQueue, webhookQueue, model };
    const task = (chunk: number) => ({ job: job.id, tenant: job.tenant, chunk });
    const chunksDone = async () => (await readJob(stack.store, job.tenant, job.id))!.job.progress.chunks_done;

    expect(await runChunkStep(deps, task(0))).toBe('computed');

    // The duplicate of chunk 1 reads the job (chunks_done = 1), then stalls in its first model call.
    let stalled!: () => void;
    const inModel = new Promise<void>((r) => (stalled = r));
    let resume!: () => void;
    const gate = new Promise<void>((r) => (resume = r));
    const step = model.step.bind(model);
    let gated = false;
    let outcome: string | undefined;
    model.step = (async (input: StepInput, fetch?: StepFetch) => {
      if (!gated) { gated = true; stalled(); await gate; }
      return fetch ? step(input, fetch) : step(input);
    }) as typeof model.step;
    try {
      const duplicate = runChunkStep(deps, task(1));
      await inModel;
      // Meanwhile the original task of chunk 1, then chunk 2, finish on another worker.
      expect(await runChunkStep(deps, task(1))).toBe('computed');
      expect(await runChunkStep(deps, task(2))).toBe('computed');
      expect(await chunksDone()).toBe(3);
      resume();
      outcome = await duplicate;
    } finally {
      model.step = step;
    }
    expect(await chunksDone()).toBe(3); // never backwards
    expect(sent.filter((e) => e.type === 'output').map((e) => e.chunk)).toEqual([0, 1, 2]);
    expect(outcome).toBe('skipped');
  });
});
