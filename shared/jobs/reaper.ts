/**
 * The stalled-job reaper: makes sure no unfinished job is left with no task anywhere.
 *
 * Every job gets an `active/{tenant}/{job}` marker when it is created. The reaper lists the
 * markers; a finished (or vanished) job's marker is deleted; an unfinished job whose record has
 * not changed for longer than a chunk could take gets its next chunk task sent again. That task is
 * harmless if the old one still exists (the chunk step is idempotent, and a FIFO group runs one
 * task of a job at a time), and it revives a job whose task was lost (a worker killed between
 * recording a chunk and sending the next, an API crash before chunk 0 was queued).
 */
import { ACTIVE_PREFIX, isSafeId } from '../keys.js';
import type { TaskQueue } from '../queue/task-queue.js';
import { isTerminal } from '../schemas/job.js';
import type { ObjectStore } from '../store/object-store.js';
import { readJob } from './job-store.js';
import { enqueueChunk } from './lifecycle.js';

/** Default: a job whose record has not moved for 10 minutes is stalled (a chunk takes seconds). */
export const DEFAULT_STALL_AFTER_SEC = 600;

export interface ReapDeps {
  store: ObjectStore;
  chunkQueue: TaskQueue;
}

export interface ReapResult {
  /** Unfinished jobs looked at. */
  active: number;
  /** Jobs whose next chunk task was sent again: `{job, chunk}`. */
  requeued: { job: string; chunk: number }[];
  /** Markers of finished or vanished jobs, deleted. */
  cleared: number;
}

/** One pass of the reaper (see top). Safe to run concurrently and repeatedly. */
export async function reapStalledJobs(deps: ReapDeps, opts: { stallAfterSec: number; now?: Date }): Promise<ReapResult> {
  const now = (opts.now ?? new Date()).getTime();
  const result: ReapResult = { active: 0, requeued: [], cleared: 0 };
  for (const key of await deps.store.list(ACTIVE_PREFIX)) {
    const [tenant, id] = key.slice(ACTIVE_PREFIX.length).split('/');
    if (!tenant || !id || !isSafeId(tenant) || !isSafeId(id)) continue;
    const found = await readJob(deps.store, tenant, id);
    if (!found || isTerminal(found.job.status)) {
      await deps.store.delete(key);
      result.cleared++;
      continue;
    }
    result.active++;
    const job = found.job;
    if (now - Date.parse(job.updated_at) < opts.stallAfterSec * 1000) continue;
    const chunk = Math.min(job.progress.chunks_done, Math.max(0, job.progress.chunks_total - 1));
    // One send per stalled state of the job: a second pass over the same state is deduplicated
    // (within the queue's window; after it, the job is still stalled and a new task is fair).
    await enqueueChunk(deps.chunkQueue, job, chunk, { now: new Date(now), retry: `reap:${Date.parse(job.updated_at)}` });
    result.requeued.push({ job: job.id, chunk });
  }
  return result;
}

/** Runs a pass every `everySec` until closed (the embedded stack's twin of the scheduled function). */
export function startReaper(
  deps: ReapDeps,
  opts: { stallAfterSec: number; everySec: number; onPass?: (result: ReapResult) => void; onError?: (e: unknown) => void },
): { close(): Promise<void> } {
  let stopped = false;
  let wake: () => void = () => {};
  const loop = (async () => {
    while (!stopped) {
      try {
        opts.onPass?.(await reapStalledJobs(deps, opts));
      } catch (error) {
        opts.onError?.(error);
      }
      await new Promise<void>((r) => { wake = r; setTimeout(r, opts.everySec * 1000).unref?.(); });
    }
  })();
  return { close: async () => { stopped = true; wake(); await loop; } };
}
