import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChunkStep, type ChunkDeps } from '../../gpu-worker/chunk-step.js';
import { ModelSession } from '../../gpu-worker/model-session.js';
import { readJob } from '../../shared/jobs/job-store.js';
import type { TaskQueue } from '../../shared/queue/task-queue.js';
import { localStack, MODEL_DIR, submitJob, tempDir } from './fixtures.js';

let model: ModelSession;
beforeAll(async () => { model = await ModelSession.open(MODEL_DIR); });
afterAll(async () => { await model.release(); });

/** Every message in the queue, received and deleted. */
async function takeAll(queue: TaskQueue) {
  const bodies: { chunk: number }[] = [];
  for (;;) {
    const [m] = await queue.receive({ max: 1, visibilitySec: 30 });
    if (!m) return bodies;
    bodies.push(JSON.parse(m.body));
    await queue.delete(m.receiptHandle);
  }
}

describe('a chunk received twice, whose first taker dies after recording it', () => {
  it('still leaves task k+1 in the queue: the declined duplicate sends it', async () => {
    const stack = localStack(tempDir());
    const l = model.manifest.chunk_frames;
    const job = await submitJob(stack, model.manifest, { frames: 3 * l, steps: 2 });
    await takeAll(stack.chunkQueue);
    const task = { job: job.id, tenant: job.tenant, chunk: 0 };

    // Worker A records chunk 0 and is killed before its send of task 1 goes out.
    const killedQueue = Object.create(stack.chunkQueue) as TaskQueue;
    killedQueue.send = () => Promise.reject(new Error('killed'));
    const depsA: ChunkDeps = { ...stack, chunkQueue: killedQueue, model };
    // Worker B got chunk 0 again (A's lease ran out) and read the job before A recorded it: A runs
    // to its death while B makes its first model call.
    let a: Promise<unknown> | undefined;
    const modelB = Object.create(model) as ModelSession;
    modelB.step = (async (...args: Parameters<ModelSession['step']>) => {
      a ??= runChunkStep(depsA, task).catch((e: Error) => e.message);
      await a;
      return model.step(...args);
    }) as ModelSession['step'];
    const outcomeB = await runChunkStep({ ...stack, model: modelB }, task);

    expect(await a).toBe('killed');
    expect(outcomeB).toBe('skipped');
    const after = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(after.progress.chunks_done).toBe(1);
    expect((await takeAll(stack.chunkQueue)).map((t) => t.chunk)).toEqual([1]);
  });
});
