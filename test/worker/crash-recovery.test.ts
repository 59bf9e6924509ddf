import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { adaptersFromEnv } from '../../gpu-worker/adapters.js';
import { loadManifest } from '../../shared/model/manifest.js';
import { readJob } from '../../shared/jobs/job-store.js';
import type { Job } from '../../shared/schemas/job.js';
import { MODEL_DIR, submitJob, tempDir } from './fixtures.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

/** The real worker process (gpu-worker/main.ts) on an embedded data folder. */
function startWorker(dataDir: string, env: Record<string, string> = {}): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', 'gpu-worker/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, DATA_DIR: dataDir, STORE: 'local', VISIBILITY_SEC: '2', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}

async function waitFor(job: Job, dataDir: string, done: (j: Job) => boolean, timeoutMs = 120_000): Promise<Job> {
  const { store } = adaptersFromEnv({ STORE: 'local', DATA_DIR: dataDir });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const current = (await readJob(store, job.tenant, job.id))!.job;
    if (done(current)) return current;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`job ${job.id} did not reach the expected state in ${timeoutMs} ms`);
}

/** Every stored object of the job under frames/ and output/, with its bytes. */
async function outputs(dataDir: string, job: Job): Promise<Map<string, Buffer>> {
  const { store } = adaptersFromEnv({ STORE: 'local', DATA_DIR: dataDir });
  const result = new Map<string, Buffer>();
  for (const dir of ['frames/', 'output/', 'cache/']) {
    for (const key of await store.list(`jobs/${job.tenant}/${job.id}/${dir}`)) {
      result.set(key, (await store.get(key))!.body);
    }
  }
  return result;
}

describe('a worker killed mid-job', () => {
  it('is restarted and finishes the same job with output identical to an uninterrupted run', async () => {
    const { manifest } = await loadManifest(MODEL_DIR);
    const chunks = 5;
    const request = { id: 'crashjob', frames: chunks * manifest.chunk_frames, steps: 6, seed: 5, label: 2 };

    // Reference: one uninterrupted worker process.
    const refDir = tempDir();
    const refJob = await submitJob(adaptersFromEnv({ STORE: 'local', DATA_DIR: refDir }) , manifest, request);
    const ref = startWorker(refDir);
    await waitFor(refJob, refDir, (j) => j.status === 'succeeded');
    ref.kill("SIGTERM");

    // Same job: SIGKILL the worker while chunk 2 is in flight, then start a fresh one.
    const dir = tempDir();
    const job = await submitJob(adaptersFromEnv({ STORE: 'local', DATA_DIR: dir }) , manifest, request);
    const first = startWorker(dir);
    await waitFor(job, dir, (j) => j.progress.chunks_done >= 2);
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    const killedAt = (await waitFor(job, dir, () => true)).progress.chunks_done;
    expect(killedAt).toBeLessThan(chunks);
    const second = startWorker(dir);
    const finished = await waitFor(job, dir, (j) => j.status === 'succeeded' || j.status === 'failed');
    second.kill('SIGTERM');
    expect(finished.status).toBe('succeeded');
    expect(finished.progress.chunks_done).toBe(chunks);

    const [want, got] = await Promise.all([outputs(refDir, refJob), outputs(dir, job)]);
    expect([...got.keys()]).toEqual([...want.keys()]);
    for (const [key, bytes] of want) expect(got.get(key)!.equals(bytes), key).toBe(true);
  }, 240_000);

  it('with every segment stored in the background: killed and restarted, frames identical, or within the rebuild difference where a segment was lost', async () => {
    const { manifest } = await loadManifest(MODEL_DIR);
    const chunks = 5;
    const request = { id: 'crashdefer', frames: chunks * manifest.chunk_frames, steps: 6, seed: 5, label: 2 };
    const deferred = { DEFER_SEGMENT_BYTES: '0' };

    const refDir = tempDir();
    const refJob = await submitJob(adaptersFromEnv({ STORE: 'local', DATA_DIR: refDir }), manifest, request);
    const ref = startWorker(refDir, deferred);
    await waitFor(refJob, refDir, (j) => j.status === 'succeeded');
    ref.kill('SIGTERM');

    const dir = tempDir();
    const job = await submitJob(adaptersFromEnv({ STORE: 'local', DATA_DIR: dir }), manifest, request);
    const first = startWorker(dir, deferred);
    // Killed right after chunk 1 is recorded: its segment may still be on its way.
    await waitFor(job, dir, (j) => j.progress.chunks_done >= 2);
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    const second = startWorker(dir, { ...deferred, LOG_LEVEL: 'warn' });
    let log = '';
    second.stderr!.on('data', (d) => { log += d; });
    const finished = await waitFor(job, dir, (j) => j.status === 'succeeded' || j.status === 'failed');
    second.kill('SIGTERM');
    expect(finished.status).toBe('succeeded');

    const [want, got] = await Promise.all([outputs(refDir, refJob), outputs(dir, job)]);
    // A segment lost with the killed worker is rebuilt from its chunk's lossless clean copy: the same
    // K/V, so every frame is the reference's, byte for byte.
    const frameKeys = [...want.keys()].filter((k) => k.includes('/frames/'));
    expect(frameKeys.length).toBeGreaterThan(0);
    for (const key of frameKeys) expect(got.get(key)!.equals(want.get(key)!), key).toBe(true);
  }, 240_000);
});
