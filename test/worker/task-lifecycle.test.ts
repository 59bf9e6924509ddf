// A task is deleted only once its chunk step has finished: a chunk that fails with a transient error
// leaves its task for redelivery, and the job still finishes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelSession, type StepFetch, type StepInput } from '../../gpu-worker/model-session.js';
import { ChunkWorker, type TaskEvent } from '../../gpu-worker/worker.js';
import { readJob } from '../../shared/jobs/job-store.js';
import { localStack, MODEL_DIR, submitJob, tempDir } from './fixtures.js';

let model: ModelSession;
beforeAll(async () => { model = await ModelSession.open(MODEL_DIR); });
afterAll(async () => { await model.release(); });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a chunk that fails with a transient error', () => {
  it('keeps its task, which comes back after the visibility timeout and finishes the job', async () => {
    const stack = localStack(tempDir());
    const job = await submitJob(stack, model.manifest, { frames: model.manifest.chunk_frames, steps: 2 });
    const step = model.step.bind(model);
    let failures = 1;
    model.step = (async (input: StepInput, fetch?: StepFetch) => {
      if (failures > 0) { failures--; throw new Error('device lost'); }
      return fetch ? step(input, fetch) : step(input);
    }) as typeof model.step;
    const events: TaskEvent[] = [];
    let depthAfterFailure: Promise<number> | undefined;
    const onTask = (e: TaskEvent) => {
      events.push(e);
      // Read at once: the task stays invisible for its visibility timeout, so nobody has taken it yet.
      if (events.length === 1) depthAfterFailure = stack.chunkQueue.depth();
    };
    const worker = new ChunkWorker({ ...stack, model, visibilitySec: 2, waitSec: 0.2, onTask });
    const running = worker.run();
    try {
      for (let i = 0; i < 200 && events.length < 2; i++) await sleep(100);
    } finally {
      await worker.close();
      await running;
      model.step = step;
    }
    expect(await depthAfterFailure).toBe(1);
    expect(events.map((e) => e.outcome)).toEqual(['retry', 'finalized']);
    expect(events[0].error).toContain('device lost');
    expect((await readJob(stack.store, job.tenant, job.id))!.job.status).toBe('succeeded');
    expect(await stack.chunkQueue.depth()).toBe(0);
  });
});
