import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeReapHandler } from '../../../functions/reap-stalled-jobs.js';
import { createVideo } from '../../../shared/api/videos.js';
import { readJob, updateJob } from '../../../shared/jobs/job-store.js';
import { activeJobKey } from '../../../shared/keys.js';
import { reapStalledJobs } from '../../../shared/jobs/reaper.js';
import type { TaskQueue } from '../../../shared/queue/task-queue.js';
import { lambdaContext, tempStack, testConfig, testManifest, type TempStack } from '../../api/helpers.js';

let stack: TempStack;
beforeEach(async () => { stack = await tempStack(); });
afterEach(async () => { await stack.cleanup(); });

const ctx = { tenant: 'tenant1', baseUrl: 'http://127.0.0.1:8080' };
const later = (minutes: number) => new Date(Date.now() + minutes * 60_000);

async function takeAll(queue: TaskQueue) {
  const chunks: number[] = [];
  for (;;) {
    const [m] = await queue.receive({ max: 1, visibilitySec: 30 });
    if (!m) return chunks;
    chunks.push(JSON.parse(m.body).chunk);
    await queue.delete(m.receiptHandle);
  }
}

/** A job made through the API, whose chunk 0 was recorded by a worker that died before sending chunk 1. */
async function stalledJob() {
  const deps = { store: stack.store, chunkQueue: stack.chunkQueue, manifest: testManifest(), config: testConfig() };
  const { job } = await createVideo(deps, ctx, { body: { frames: 12, seed: 1 } });
  await takeAll(stack.chunkQueue);
  await updateJob(stack.store, ctx.tenant, job.id, (j) => ({ ...j, status: 'processing', progress: { ...j.progress, chunks_done: 1, frames_done: 4 } }));
  return job.id;
}

describe('stalled-job reaper', () => {
  it('queues the next chunk of an unfinished job with no task and no progress, once per stalled state', async () => {
    const id = await stalledJob();
    const deps = { store: stack.store, chunkQueue: stack.chunkQueue };
    // Not yet stalled: nothing is sent.
    expect((await reapStalledJobs(deps, { stallAfterSec: 600 })).requeued).toEqual([]);
    const pass = await reapStalledJobs(deps, { stallAfterSec: 600, now: later(11) });
    expect(pass.requeued).toEqual([{ job: id, chunk: 1 }]);
    // A second pass over the same state is deduplicated.
    await reapStalledJobs(deps, { stallAfterSec: 600, now: later(12) });
    expect(await takeAll(stack.chunkQueue)).toEqual([1]);
  });

  it('forgets a job once it has finished, and ignores a job that finished meanwhile', async () => {
    const id = await stalledJob();
    await updateJob(stack.store, ctx.tenant, id, (j) => ({ ...j, status: 'succeeded' }));
    const deps = { store: stack.store, chunkQueue: stack.chunkQueue };
    const pass = await reapStalledJobs(deps, { stallAfterSec: 600, now: later(11) });
    expect(pass).toEqual({ active: 0, requeued: [], cleared: 1 });
    expect(await stack.store.head(activeJobKey(ctx.tenant, id))).toBeNull();
    expect(await takeAll(stack.chunkQueue)).toEqual([]);
  });

  it('revives a job whose chunk 0 was never queued (the API died after writing it)', async () => {
    const deps = { store: stack.store, chunkQueue: stack.chunkQueue, manifest: testManifest(), config: testConfig() };
    const { job } = await createVideo(deps, ctx, { body: { frames: 4, seed: 1 } });
    await takeAll(stack.chunkQueue);
    expect((await readJob(stack.store, ctx.tenant, job.id))!.job.status).toBe('starting');
    const handler = makeReapHandler(() => ({ store: stack.store, chunkQueue: stack.chunkQueue }), 0);
    expect(await handler({}, lambdaContext())).toEqual({ active: 1, requeued: 1, cleared: 0 });
    expect(await takeAll(stack.chunkQueue)).toEqual([0]);
  });
});
