// More of the chunk step with the stand-in graph (fast): the queue wait is chunk 0's alone, the
// phases it logs add up, a duplicate that won and a job that then ended, a lost starting-frames
// segment rebuilt on read; and a latent model's chunk (the committed tiny random-weight model).
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { runChunkStep, type ChunkDeps } from '../../gpu-worker/chunk-step.js';
import { latentsKey } from '../../gpu-worker/latent-chunk.js';
import { LatentModelSession } from '../../gpu-worker/latent-session.js';
import { log } from '../../gpu-worker/log.js';
import { WindowMemo } from '../../gpu-worker/window-memo.js';
import { createJob, readJob, updateJob } from '../../shared/jobs/job-store.js';
import { cacheSegmentKey, frameKey, inputFrameKey } from '../../shared/keys.js';
import { framesToPngs } from '../../shared/media/png.js';
import type { Job } from '../../shared/schemas/job.js';
import { localStack, submitJob, tempDir } from './fixtures.js';
import { INIT_PNGS, recordingQueue, standIn, TINY_MANIFEST, watchedStore, type StoreWatch } from './standin.js';


async function rig(opts: { frames?: number; init?: boolean; memo?: boolean } = {}) {
  const stack = localStack(tempDir());
  const { model, calls } = standIn();
  const job = await submitJob(stack, TINY_MANIFEST, { frames: opts.frames ?? 7, steps: 2, webhook: 'https://hooks.example.com/x', ...(opts.init ? { initPngs: INIT_PNGS } : {}) });
  const watch: StoreWatch = { cacheReads: [], contentTypes: {} };
  const tasks: Record<string, unknown>[] = [], events: Record<string, unknown>[] = [];
  const deps: ChunkDeps = {
    store: watchedStore(stack.store, watch), chunkQueue: recordingQueue(stack.chunkQueue, tasks), webhookQueue: recordingQueue(stack.webhookQueue, events),
    model, ...(opts.memo ? { windowMemo: new WindowMemo() } : {}),
  };
  const step = (k: number) => runChunkStep(deps, { job: job.id, tenant: job.tenant, chunk: k });
  const stored = async () => (await readJob(stack.store, job.tenant, job.id))!.job;
  return { stack, deps, watch, tasks, events, calls, job, step, stored };
}

describe('runChunkStep: what later chunks leave as it was', () => {
  it('keeps chunk 0\'s queue wait when later chunks are recorded', async () => {
    const r = await rig();
    await updateJob(r.stack.store, r.job.tenant, r.job.id, (j) => ({ ...j, created_at: new Date(Date.now() - 5_000).toISOString() }));
    await r.step(0);
    const wait = (await r.stored()).metrics.queue_wait_s;
    // Later chunks would count a longer wait: half a second more of it has passed.
    await updateJob(r.stack.store, r.job.tenant, r.job.id, (j) => ({ ...j, created_at: new Date(Date.parse(j.created_at) - 500).toISOString() }));
    await r.step(1);
    await r.step(2);
    expect((await r.stored()).metrics.queue_wait_s).toBe(wait);
  });
});

describe('runChunkStep: the phases it logs', () => {
  it('logs each phase of a chunk in whole milliseconds, within the chunk\'s own time', async () => {
    const r = await rig({ init: true, memo: true });
    await r.step(0);
    const debug = vi.spyOn(log, 'debug');
    try {
      const before = performance.now();
      await r.step(1);
      const wall = performance.now() - before;
      const phases = debug.mock.calls.filter(([m]) => m === 'chunk phases').map(([, f]) => f);
      expect(phases).toHaveLength(1);
      const { ms, ...rest } = phases[0] as { ms: Record<string, number> };
      expect(rest).toEqual({ job: r.job.id, chunk: 1, cache_frames: 5 });
      expect(Object.keys(ms).sort()).toEqual(['advance', 'cache_read', 'denoise', 'frames', 'job_update', 'kv_pass', 'stream', 'write']);
      for (const [name, v] of Object.entries(ms)) {
        expect(Number.isInteger(v), name).toBe(true);
        expect(v, name).toBeGreaterThanOrEqual(0);
        expect(v, name).toBeLessThanOrEqual(Math.ceil(wall));
      }
      expect(ms.cache_read + ms.denoise + ms.write + ms.job_update).toBeLessThanOrEqual(Math.ceil(wall) + 2);
    } finally {
      debug.mockRestore();
    }
  });
});

describe('runChunkStep when the job changed while the chunk was computed', () => {
  /** Runs `meanwhile` once chunk `k`'s first frame is being stored (after its denoising). */
  function during(r: Awaited<ReturnType<typeof rig>>, k: number, meanwhile: (j: Job) => Job) {
    let done = false;
    r.watch.beforePut = async (key) => {
      if (done || key !== frameKey(r.job.tenant, r.job.id, k, 0)) return;
      done = true;
      await updateJob(r.stack.store, r.job.tenant, r.job.id, meanwhile);
    };
  }

  it('a duplicate recorded the chunk and the job then ended: nothing sent', async () => {
    const r = await rig();
    await r.step(0);
    r.tasks.length = 0;
    during(r, 1, (j) => ({ ...j, status: 'canceled', completed_at: new Date().toISOString(), progress: { ...j.progress, chunks_done: 2, frames_done: 4 } }));
    expect(await r.step(1)).toBe('skipped');
    expect(r.tasks).toEqual([]);
    expect((await r.stored()).status).toBe('canceled');
  });

  it('a record that no longer counts the chunk before this one: nothing recorded, nothing sent', async () => {
    const r = await rig();
    await r.step(0);
    r.tasks.length = 0;
    during(r, 1, (j) => ({ ...j, progress: { ...j.progress, chunks_done: 0, frames_done: 0 } }));
    expect(await r.step(1)).toBe('skipped');
    expect(r.tasks).toEqual([]);
    expect((await r.stored()).progress.chunks_done).toBe(0);
  });
});

describe('runChunkStep: the starting frames\' K/V', () => {
  it('is computed by chunk 0 only: lost later, it is rebuilt from the starting frames on read and noted', async () => {
    const r = await rig({ init: true });
    await r.step(0);
    await r.stack.store.delete(cacheSegmentKey(r.job.tenant, r.job.id, 'prefix'));
    const kvCalls = r.calls.filter((c) => c.fetch === 'kv').length;
    expect(await r.step(1)).toBe('computed');
    expect((await r.stored()).repairs).toEqual([expect.objectContaining({ object: 'cache/prefix.kv', from: 'input', lossy: false })]);
    // The rebuild's pass and the chunk's own; the segment is back.
    expect(r.calls.filter((c) => c.fetch === 'kv').length - kvCalls).toBe(2);
    expect(await r.stack.store.head(cacheSegmentKey(r.job.tenant, r.job.id, 'prefix'))).not.toBeNull();
  });
});

describe('runChunkStep with a latent model', () => {
  it('makes the chunk with the latent path: latents, frames, the job recorded', async () => {
    const model = await LatentModelSession.open(fileURLToPath(new URL('../../model/artifacts/official-tiny-random/', import.meta.url)), 'cpu', 1);
    try {
      const m = model.manifest;
      const stack = localStack(tempDir());
      const now = new Date().toISOString();
      const id = 'latent1', tenant = 'tenant1';
      const keys = [inputFrameKey(tenant, id, 0)];
      const g = { ...m.frame };
      await stack.store.put(keys[0], framesToPngs(new Float32Array(3 * m.frame.height * m.frame.width).fill(0.1), g)[0]);
      const frames = m.chunk_frames + 1;
      const job: Job = {
        id, tenant, status: 'starting',
        request: { frames, seed: 3, guidance: m.guidance.default, steps: 2, init_frames: { count: 1, keys }, webhook_events_filter: ['completed'] },
        model: { name: m.name, sha256: m.onnx_sha256, chunk_frames: m.chunk_frames },
        progress: { chunks_done: 0, chunks_total: 2, frames_done: 0, frames_total: frames },
        created_at: now, updated_at: now, metrics: { chunk_seconds: [] }, outputs: {}, cancel_requested: false,
      };
      await createJob(stack.store, job);
      expect(await runChunkStep({ ...stack, model }, { job: id, tenant, chunk: 0 })).toBe('computed');
      expect(await stack.store.head(latentsKey(job, 0))).not.toBeNull();
      expect(await stack.store.head(frameKey(tenant, id, 0, m.chunk_frames - 1))).not.toBeNull();
      expect((await readJob(stack.store, tenant, id))!.job.progress).toMatchObject({ chunks_done: 1, frames_done: m.chunk_frames });
    } finally {
      await model.release();
    }
  });
});
