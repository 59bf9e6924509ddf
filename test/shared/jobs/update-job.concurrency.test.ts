// Concurrent read-modify-write of one job record, for real: every updateJob that returns must be in
// the final record (no lost update), on the local store (async callers in one process, and separate
// processes) and on the S3 adapter against a server that honours If-Match.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJob, JobConflictError, readJob, updateJob } from '../../../shared/jobs/job-store.js';
import { newJob } from '../../../shared/jobs/lifecycle.js';
import type { Job } from '../../../shared/schemas/job.js';
import { LocalStore } from '../../../shared/store/local-store.js';
import type { ObjectStore } from '../../../shared/store/object-store.js';
import { S3Store } from '../../../shared/store/s3-store.js';
import { tempDir } from '../../worker/fixtures.js';
import { startS3Shim, type S3Shim } from '../s3-shim.js';

const run = promisify(execFile);
const racer = fileURLToPath(new URL('../fixtures/race-update.ts', import.meta.url));

function job(id: string): Job {
  const created = newJob({
    id, tenant: 't1',
    request: { frames: 8, seed: 1, guidance: 2, steps: 2, init_frames: { count: 0, keys: [] }, webhook_events_filter: [] },
    manifest: { name: 'm', onnx_sha256: 'a'.repeat(64), chunk_frames: 4 },
    now: new Date(),
  });
  return { ...created, status: 'processing' };
}

const append = (marker: number) => (j: Job): Job => ({ ...j, metrics: { ...j.metrics, chunk_seconds: [...j.metrics.chunk_seconds, marker] } });

/** `n` concurrent appends; returns the markers whose updateJob returned, and the final record's. */
async function race(store: ObjectStore, id: string, n: number, maxAttempts: number) {
  await createJob(store, job(id));
  const results = await Promise.allSettled(Array.from({ length: n }, (_, i) => updateJob(store, 't1', id, append(i), maxAttempts)));
  for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(JobConflictError);
  const returned = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
  const final = (await readJob(store, 't1', id))!.job.metrics.chunk_seconds;
  return { returned, final: [...final].sort((a, b) => a - b) };
}

function describeRaces(name: string, makeStore: () => ObjectStore) {
  describe(`concurrent updateJob on ${name}`, () => {
    it('16 concurrent updates with room to retry: all 16 land, none lost', async () => {
      const { returned, final } = await race(makeStore(), 'all16', 16, 100);
      expect(returned).toHaveLength(16);
      expect(final).toEqual(returned);
    });

    it('with only 2 attempts each: an update either lands or fails with JobConflictError, never vanishes', async () => {
      const { returned, final } = await race(makeStore(), 'tight', 12, 2);
      expect(returned.length).toBeGreaterThanOrEqual(1);
      expect(returned.length).toBeLessThan(12); // really contended: some gave up
      expect(final).toEqual(returned);
    });
  });
}

describeRaces('the local store', () => new LocalStore({ root: tempDir('update-race-') }));

let shim: S3Shim;
let n = 0;
beforeAll(async () => { shim = await startS3Shim(); });
afterAll(() => shim.close());
describeRaces('the S3 adapter (loopback server with conditional writes)', () => new S3Store({ client: shim.client, bucket: shim.bucket, keyPrefix: `r${++n}/` }));

describe('concurrent updateJob across processes on one local store folder', () => {
  it('4 processes x 5 updates: all 20 land', async () => {
    const root = tempDir('update-procs-');
    await createJob(new LocalStore({ root }), job('procs'));
    const startAt = Date.now() + 2_500;
    const outs = await Promise.all(Array.from({ length: 4 }, (_, p) =>
      run(process.execPath, ['--import', 'tsx', racer, root, 't1', 'procs', String(startAt), String(p * 100), '5'])));
    expect(outs.map((o) => Number(o.stdout.trim()))).toEqual([5, 5, 5, 5]);
    const final = (await readJob(new LocalStore({ root }), 't1', 'procs'))!.job.metrics.chunk_seconds;
    expect([...final].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 100, 101, 102, 103, 104, 200, 201, 202, 203, 204, 300, 301, 302, 303, 304]);
  }, 60_000);
});
