import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runChunkStep } from '../../gpu-worker/chunk-step.js';
import { ModelSession } from '../../gpu-worker/model-session.js';
import { readJob, updateJob } from '../../shared/jobs/job-store.js';
import type { TaskQueue } from '../../shared/queue/task-queue.js';
import { drainQueue, localStack, MODEL_DIR, submitJob, tempDir } from './fixtures.js';

let model: ModelSession;
beforeAll(async () => { model = await ModelSession.open(MODEL_DIR); });
afterAll(async () => { await model.release(); });

async function events(queue: TaskQueue) {
  const out: { type: string; sequence?: number; chunk?: number }[] = [];
  for (;;) {
    const [m] = await queue.receive({ max: 1, visibilitySec: 30 });
    if (!m) return out;
    out.push(JSON.parse(m.body));
    await queue.delete(m.receiptHandle);
  }
}

describe('cancel and webhook order', () => {
  it('ends a job canceled, with no outputs, when the cancel comes while its last chunk is in flight', async () => {
    const stack = localStack(tempDir());
    const job = await submitJob(stack, model.manifest, { frames: model.manifest.chunk_frames, steps: 2, webhook: 'https://example.com/h' });
    const cancelling = Object.create(model) as ModelSession;
    let asked = false;
    cancelling.step = (async (...args: Parameters<ModelSession['step']>) => {
      if (!asked) {
        asked = true;
        await updateJob(stack.store, job.tenant, job.id, (j) => ({ ...j, cancel_requested: true }));
      }
      return model.step(...args);
    }) as ModelSession['step'];
    await runChunkStep({ ...stack, model: cancelling }, { job: job.id, tenant: job.tenant, chunk: 0 });
    const done = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(done.status).toBe('canceled');
    expect(done.outputs).toEqual({});
    expect((await events(stack.webhookQueue)).filter((e) => e.type === 'completed')).toHaveLength(1);
  });

  it('numbers each job\'s events in order: start 0, output k+1, completed last', async () => {
    const stack = localStack(tempDir());
    await submitJob(stack, model.manifest, { frames: 2 * model.manifest.chunk_frames, steps: 2, webhook: 'https://example.com/h' });
    await drainQueue(stack, model);
    const got = await events(stack.webhookQueue);
    expect(got.map((e) => [e.type, e.sequence])).toEqual([['start', 0], ['output', 1], ['output', 2], ['completed', 3]]);
  });
});
