// A chunk that runs longer than its task's visibility timeout: the worker's heartbeat must keep the
// task invisible the whole time, or the queue hands it to another worker mid-chunk.
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelSession, type StepFetch, type StepInput } from '../../gpu-worker/model-session.js';
import { ChunkWorker, type TaskEvent } from '../../gpu-worker/worker.js';
import { readJob } from '../../shared/jobs/job-store.js';
import { LocalQueue } from '../../shared/queue/local-queue.js';
import { localStack, MODEL_DIR, submitJob, tempDir } from './fixtures.js';

let model: ModelSession;
beforeAll(async () => { model = await ModelSession.open(MODEL_DIR); });
afterAll(async () => { await model.release(); });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('a chunk slower than its visibility timeout', () => {
  it('is never handed to another consumer while it runs, and finishes once', async () => {
    const dir = tempDir();
    const stack = localStack(dir);
    const job = await submitJob(stack, model.manifest, { frames: model.manifest.chunk_frames, steps: 2 });
    const VISIBILITY_SEC = 2;

    // The chunk's first model call waits until the probe below has watched the queue for 2.5 windows.
    let entered!: () => void;
    const inChunk = new Promise<void>((r) => (entered = r));
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const step = model.step.bind(model);
    let first = true;
    model.step = (async (input: StepInput, fetch?: StepFetch) => {
      if (first) { first = false; entered(); await held; }
      return fetch ? step(input, fetch) : step(input);
    }) as typeof model.step;

    const events: TaskEvent[] = [];
    const worker = new ChunkWorker({ ...stack, model, visibilitySec: VISIBILITY_SEC, waitSec: 0.2, onTask: (e) => events.push(e) });
    const running = worker.run();
    // Another worker's view of the same queue (another process would open the same folder).
    const probe = new LocalQueue({ dir: path.join(dir, 'chunk-queue') });
    const stolen: number[] = [];
    try {
      await inChunk;
      for (let i = 0; i < 25; i++) {   // 25 x 200 ms: 2.5 visibility windows at least
        const got = await probe.receive({ max: 1, visibilitySec: 60 });
        stolen.push(...got.map((m) => m.receiveCount));
        await sleep(200);
      }
    } finally {
      release();
      while (events.length === 0 && stolen.length === 0) await sleep(50);
      await worker.close();
      await running;
      model.step = step;
    }
    expect(stolen).toEqual([]);
    expect(events.map((e) => e.outcome)).toEqual(['finalized']);
    expect((await readJob(stack.store, job.tenant, job.id))!.job.status).toBe('succeeded');
    expect(await stack.chunkQueue.depth()).toBe(0);
  });
});
