import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJob, JobConflictError, readJob, updateJob } from '../../../shared/jobs/job-store.js';
import { newJob } from '../../../shared/jobs/lifecycle.js';
import { jobKey } from '../../../shared/keys.js';
import type { Job } from '../../../shared/schemas/job.js';
import { PreconditionFailedError, StoreError } from '../../../shared/store/errors.js';
import { LocalStore } from '../../../shared/store/local-store.js';
import type { ObjectStore } from '../../../shared/store/object-store.js';
import { S3Store } from '../../../shared/store/s3-store.js';
import { tempDir } from '../../worker/fixtures.js';
import { startS3Shim, type S3Shim } from '../s3-shim.js';

function job(id: string): Job {
  return newJob({
    id, tenant: 't1',
    request: { frames: 8, seed: 1, guidance: 2, steps: 2, init_frames: { count: 0, keys: [] }, webhook_events_filter: [] },
    manifest: { name: 'm', onnx_sha256: 'a'.repeat(64), chunk_frames: 4 },
    now: new Date('2030-01-01T00:00:00.000Z'),
  });
}

let shim: S3Shim;
beforeAll(async () => { shim = await startS3Shim(); });
afterAll(() => shim.close());

describe('job store', () => {
  it('stores job.json as application/json, on create and on update', async () => {
    const store = new S3Store({ client: shim.client, bucket: shim.bucket });
    await createJob(store, job('ct'));
    expect((await store.get(jobKey('t1', 'ct')))!.contentType).toBe('application/json');
    await updateJob(store, 't1', 'ct', (j) => ({ ...j, status: 'processing' }));
    expect((await store.get(jobKey('t1', 'ct')))!.contentType).toBe('application/json');
  });

  it('one attempt is enough without contention', async () => {
    const store = new LocalStore({ root: tempDir('job-store-') });
    await createJob(store, job('one'));
    const updated = await updateJob(store, 't1', 'one', (j) => ({ ...j, status: 'processing' }), 1);
    expect(updated!.job.status).toBe('processing');
    expect((await readJob(store, 't1', 'one'))!.etag).toBe(updated!.etag);
  });

  it('gives up after maxAttempts conflicts with a JobConflictError naming the job', async () => {
    const local = new LocalStore({ root: tempDir('job-store-') });
    await createJob(local, job('busy'));
    let calls = 0;
    // Someone else writes between every read and our conditional put.
    const store: ObjectStore = Object.assign(Object.create(local) as ObjectStore, {
      put: async (key: string, body: string, opts: Parameters<ObjectStore['put']>[2]) => {
        await local.put(key, JSON.stringify({ ...JSON.parse(body), updated_at: new Date(Date.now() + ++calls).toISOString() }));
        return local.put(key, body, opts);
      },
    });
    const err = await updateJob(store, 't1', 'busy', (j) => ({ ...j, status: 'processing' }), 3).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JobConflictError);
    expect((err as JobConflictError).name).toBe('JobConflictError');
    expect((err as Error).message).toBe('job busy: gave up after 3 conflicting concurrent updates');
    expect(calls).toBe(3);
  });

  it('passes any other store error through at once, without retrying', async () => {
    const local = new LocalStore({ root: tempDir('job-store-') });
    await createJob(local, job('broken'));
    let puts = 0;
    const store: ObjectStore = Object.assign(Object.create(local) as ObjectStore, {
      put: async () => { puts++; throw new StoreError('disk full'); },
    });
    const err = await updateJob(store, 't1', 'broken', (j) => ({ ...j, status: 'processing' })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect(err).not.toBeInstanceOf(PreconditionFailedError);
    expect(puts).toBe(1);
  });
});
