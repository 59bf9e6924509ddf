import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { geometry } from '../../gpu-worker/job-plan.js';
import { ModelSession } from '../../gpu-worker/model-session.js';
import { ChunkWorker } from '../../gpu-worker/worker.js';
import { readJob, updateJob } from '../../shared/jobs/job-store.js';
import { cacheSegmentKey } from '../../shared/keys.js';
import { framesToPngs } from '../../shared/media/png.js';
import type { Job } from '../../shared/schemas/job.js';
import { captureEmf, type EmittedMetric } from '../shared/emf.js';
import { localStack, MODEL_DIR, submitJob, tempDir } from './fixtures.js';

let model: ModelSession;
beforeAll(async () => { model = await ModelSession.open(MODEL_DIR); });
afterAll(async () => { await model.release(); });

const NAMESPACE = 'Ca2vdmTest';
const named = (metrics: EmittedMetric[], name: string) => metrics.filter((m) => m.name === name);

/** Four flat grey starting frames: a prefix segment and a window that reaches back to chunk 0 by chunk 2. */
function initPngs(): Buffer[] {
  const g = geometry(model.manifest);
  return framesToPngs(new Float32Array(4 * g.channels * g.height * g.width).fill(0), g);
}

/** Runs a job's tasks one by one on a worker that re-reads its cache from the store; `between(k)` runs after task k. */
async function runJob(opts: { chunks: number; init?: boolean; between?: (dir: string, job: Job, k: number) => Promise<void> | void; prepare?: (stack: ReturnType<typeof localStack>, job: Job) => Promise<void> }) {
  const dir = tempDir();
  const stack = localStack(dir);
  const job = await submitJob(stack, model.manifest, {
    frames: opts.chunks * model.manifest.chunk_frames, steps: 2, seed: 3, ...(opts.init ? { initPngs: initPngs() } : {}),
  });
  await opts.prepare?.(stack, job);
  const worker = new ChunkWorker({ ...stack, model, waitSec: 0.2, windowMemoBytes: 0 });
  for (let k = 0; ; k++) {
    const outcome = await worker.processNext();
    if (outcome !== 'computed') break;
    await opts.between?.(dir, job, k);
  }
  await worker.close();
  return { dir, job, done: (await readJob(stack.store, job.tenant, job.id))!.job };
}

describe('worker metrics (EMF on stdout)', () => {
  it('a finished job: chunk seconds per chunk, queue wait once, one JobsEnded with status succeeded', async () => {
    const { result: run, metrics } = await captureEmf(NAMESPACE, () => runJob({ chunks: 2 }));
    expect(run.done.status).toBe('succeeded');
    for (const m of metrics) expect(m.namespace).toBe(NAMESPACE);

    const chunks = named(metrics, 'ChunkSeconds');
    expect(chunks).toHaveLength(2);
    chunks.forEach((m, k) => {
      expect(m).toMatchObject({ unit: 'Seconds', dimensions: { service: 'ca2vdm' } });
      // The job records the same seconds, rounded to the millisecond.
      expect(m.value as number).toBeCloseTo(run.done.metrics.chunk_seconds[k], 2);
    });

    const waits = named(metrics, 'QueueWaitSeconds');
    expect(waits).toHaveLength(1);
    expect(waits[0]).toMatchObject({ unit: 'Seconds', value: run.done.metrics.queue_wait_s, dimensions: { service: 'ca2vdm' } });

    expect(named(metrics, 'JobsEnded')).toEqual([
      { namespace: NAMESPACE, name: 'JobsEnded', unit: 'Count', value: 1, dimensions: { service: 'ca2vdm', status: 'succeeded' } },
    ]);
    expect(named(metrics, 'CacheRebuilds')).toEqual([]);
  });

  it('a canceled job counts once as canceled, and a redelivered task of it adds nothing', async () => {
    const { result, metrics } = await captureEmf(NAMESPACE, async () => {
      const stack = localStack(tempDir());
      const job = await submitJob(stack, model.manifest, { frames: 2 * model.manifest.chunk_frames, steps: 2 });
      await updateJob(stack.store, job.tenant, job.id, (j) => ({ ...j, cancel_requested: true }));
      // A second copy of task 0, as after a lost delete: it finds the job ended.
      await stack.chunkQueue.send(JSON.stringify({ job: job.id, tenant: job.tenant, chunk: 0 }), { groupId: `${job.id}-again`, dedupId: `${job.id}-again` });
      const worker = new ChunkWorker({ ...stack, model, waitSec: 0.2 });
      const outcomes = [await worker.processNext(), await worker.processNext()];
      await worker.close();
      return { outcomes, done: (await readJob(stack.store, job.tenant, job.id))!.job };
    });
    expect(result.outcomes).toEqual(['canceled', 'skipped']);
    expect(result.done.status).toBe('canceled');
    expect(named(metrics, 'JobsEnded').map((m) => m.dimensions.status)).toEqual(['canceled']);
    expect(named(metrics, 'ChunkSeconds')).toEqual([]);
  });

  it('a failed job counts once as failed', async () => {
    const { result: run, metrics } = await captureEmf(NAMESPACE, () => runJob({
      chunks: 2,
      // A job accepted for another model fails at once (model_mismatch).
      prepare: async (stack, job) => { await updateJob(stack.store, job.tenant, job.id, (j) => ({ ...j, model: { ...j.model, sha256: 'f'.repeat(64) } })); },
    }));
    expect(run.done.status).toBe('failed');
    expect(named(metrics, 'JobsEnded')).toEqual([
      { namespace: NAMESPACE, name: 'JobsEnded', unit: 'Count', value: 1, dimensions: { service: 'ca2vdm', status: 'failed' } },
    ]);
  });

  it('a corrupt cache segment rebuilt on the way counts one CacheRebuilds', async () => {
    const { result: run, metrics } = await captureEmf(NAMESPACE, () => runJob({
      chunks: 3,
      init: true,
      between: (dir, job, k) => {
        if (k !== 1) return;
        const file = path.join(dir, 'store', ...cacheSegmentKey(job.tenant, job.id, 0).split('/'));
        const bytes = readFileSync(file);
        bytes[bytes.length - 10] ^= 0xff;
        writeFileSync(file, bytes);
      },
    }));
    expect(run.done.status).toBe('succeeded');
    expect(run.done.repairs).toHaveLength(1);
    expect(named(metrics, 'CacheRebuilds')).toEqual([
      { namespace: NAMESPACE, name: 'CacheRebuilds', unit: 'Count', value: 1, dimensions: { service: 'ca2vdm' } },
    ]);
  });

  it('writes no EMF line where POWERTOOLS_METRICS_NAMESPACE is unset (the embedded mode)', async () => {
    const { result: run, metrics } = await captureEmf(null, () => runJob({ chunks: 1 }));
    expect(run.done.status).toBe('succeeded');
    expect(metrics).toEqual([]);
  });
});
