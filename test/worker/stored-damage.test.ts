import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanCopyKey } from '../../gpu-worker/clean-copy.js';
import { ModelSession } from '../../gpu-worker/model-session.js';
import { ChunkWorker, type TaskEvent } from '../../gpu-worker/worker.js';
import { readJob } from '../../shared/jobs/job-store.js';
import { cacheSegmentKey, frameKey } from '../../shared/keys.js';
import type { Job } from '../../shared/schemas/job.js';
import { localStack, MODEL_DIR, submitJob, tempDir } from './fixtures.js';

let model: ModelSession;
beforeAll(async () => { model = await ModelSession.open(MODEL_DIR); });
afterAll(async () => { await model.release(); });

const CHUNKS = 3;

/** Runs a job task by task on one worker; `between(file, job, k)` runs after chunk task k is computed. */
async function runJob(between: (file: (key: string) => string, job: Job, k: number) => void = () => {}, windowMemoBytes = 0) {
  const dir = tempDir();
  const stack = localStack(dir);
  const job = await submitJob(stack, model.manifest, { id: 'dmg', frames: CHUNKS * model.manifest.chunk_frames, steps: 2, seed: 3 });
  const events: TaskEvent[] = [];
  const worker = new ChunkWorker({ ...stack, model, waitSec: 0.2, windowMemoBytes, onTask: (e) => events.push(e) });
  const file = (key: string) => path.join(dir, 'store', ...key.split('/'));
  for (let k = 0; ; k++) {
    const outcome = await worker.processNext();
    if (outcome !== 'computed') break;
    between(file, job, k);
  }
  await worker.close();
  return { stack, file, events, left: await stack.chunkQueue.depth(), done: (await readJob(stack.store, job.tenant, job.id))!.job };
}

const flip = (file: string, at = 60) => { const b = readFileSync(file); b[at] ^= 0xff; writeFileSync(file, b); };
const bytesOf = (run: Awaited<ReturnType<typeof runJob>>, key: string) => readFileSync(run.file(key));

describe('damaged or missing stored objects', () => {
  let clean: Awaited<ReturnType<typeof runJob>>;
  beforeAll(async () => { clean = await runJob(); });

  it('rebuilds a corrupt frame PNG from its chunk\'s clean copy at finalize: the same file, the same video', async () => {
    const key = frameKey('tenant1', 'dmg', 0, 1);
    const run = await runJob((file, _job, k) => { if (k === 0) flip(file(key)); });
    expect(run.done.status).toBe('succeeded');
    expect(bytesOf(run, key).equals(bytesOf(clean, key))).toBe(true);
    expect(bytesOf(run, 'jobs/tenant1/dmg/output/preview.gif').equals(bytesOf(clean, 'jobs/tenant1/dmg/output/preview.gif'))).toBe(true);
    expect(run.done.repairs?.map((r) => [r.object, r.from, r.lossy])).toEqual([['frames/000000-001.png', 'clean_copy', false]]);
  });

  it('fails the job at once, naming the frame, when a corrupt frame cannot be rebuilt (never retried as transient)', async () => {
    const key = frameKey('tenant1', 'dmg', 1, 0);
    const run = await runJob((file, job, k) => {
      if (k !== 1) return;
      flip(file(key));
      rmSync(file(cleanCopyKey(job, 1)));
    });
    expect(run.done.status).toBe('failed');
    expect(run.done.error?.code).toBe('frames_corrupt');
    expect(run.done.error?.message).toContain('000001-000.png');
    expect(run.events.at(-1)?.outcome).toBe('failed');
    expect(run.events.filter((e) => e.outcome === 'retry')).toEqual([]);
    expect(run.left).toBe(0);
  });

  it('fails at the next chunk, not at finalize, when an earlier chunk\'s frame and its copy are gone', async () => {
    const run = await runJob((file, job, k) => {
      if (k !== 0) return;
      rmSync(file(frameKey('tenant1', 'dmg', 0, 2)));
      rmSync(file(cleanCopyKey(job, 0)));
    });
    expect(run.done.status).toBe('failed');
    expect(run.done.error?.code).toBe('frames_missing');
    expect(run.done.progress.chunks_done).toBe(1);
    expect(run.events.map((e) => e.outcome)).toEqual(['computed', 'failed']);
  });

  it('fails the job at once when a stored starting frame is damaged', async () => {
    const dir = tempDir();
    const stack = localStack(dir);
    const png = readFileSync(path.resolve(import.meta.dirname, '../../scripts/assets/demo-init-0.png'));
    const job = await submitJob(stack, model.manifest, { frames: 6, steps: 2, initPngs: [png] });
    flip(path.join(dir, 'store', ...job.request.init_frames.keys[0].split('/')), 40);
    const events: TaskEvent[] = [];
    const worker = new ChunkWorker({ ...stack, model, waitSec: 0.2, onTask: (e) => events.push(e) });
    await worker.processNext();
    await worker.close();
    const done = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(events.map((e) => e.outcome)).toEqual(['failed']);
    expect(done.error?.code).toBe('frames_corrupt');
    expect(done.error?.message).toContain('input/000.png');
  });

  it('leaves a sound cache in the store after success, though a worker with its window in memory never read it', async () => {
    const seg = cacheSegmentKey('tenant1', 'dmg', 0);
    const run = await runJob((file, _job, k) => { if (k === 0) flip(file(seg), readFileSync(file(seg)).length - 9); }, 64 * 2 ** 20);
    expect(run.done.status).toBe('succeeded');
    expect(bytesOf(run, seg).equals(bytesOf(clean, seg))).toBe(true);
    expect(run.done.repairs?.map((r) => r.object)).toEqual(['cache/000000.kv']);
  });
});
