import { jobKey } from '../keys.js';
import { JobSchema, type Job } from '../schemas/job.js';
import { PreconditionFailedError } from '../store/errors.js';
import type { ObjectStore } from '../store/object-store.js';

/** A job record with the ETag it was read at (the token for the next compare-and-swap). */
export interface VersionedJob {
  job: Job;
  etag: string;
}

export class JobConflictError extends Error {
  override name = 'JobConflictError';
  constructor(readonly jobId: string, readonly attempts: number) {
    super(`job ${jobId}: gave up after ${attempts} conflicting concurrent updates`);
  }
}

export async function readJob(store: ObjectStore, tenant: string, id: string): Promise<VersionedJob | null> {
  const obj = await store.get(jobKey(tenant, id));
  if (!obj) return null;
  return { job: JobSchema.parse(JSON.parse(obj.body.toString('utf8'))), etag: obj.etag };
}

/** Create the record once: a second create of the same id fails with PreconditionFailedError. */
export async function createJob(store: ObjectStore, job: Job): Promise<VersionedJob> {
  const body = JSON.stringify(JobSchema.parse(job));
  const { etag } = await store.put(jobKey(job.tenant, job.id), body, { ifNoneMatch: '*', contentType: 'application/json' });
  return { job, etag };
}

/**
 * Read-modify-write with compare-and-swap on the ETag, retried on conflict. `mutate` returns the
 * new record, or null to leave it unchanged (so callers can make a step a no-op idempotently).
 */
export async function updateJob(
  store: ObjectStore,
  tenant: string,
  id: string,
  mutate: (job: Job) => Job | null,
  maxAttempts = 8,
): Promise<VersionedJob | null> {
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const current = await readJob(store, tenant, id);
    if (!current) return null;
    const next = mutate(structuredClone(current.job));
    if (!next) return current;
    next.updated_at = new Date().toISOString();
    try {
      const body = JSON.stringify(JobSchema.parse(next));
      const { etag } = await store.put(jobKey(tenant, id), body, { ifMatch: current.etag, contentType: 'application/json' });
      return { job: next, etag };
    } catch (err) {
      if (!(err instanceof PreconditionFailedError)) throw err;
    }
  }
  throw new JobConflictError(id, maxAttempts);
}
