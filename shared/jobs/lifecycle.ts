/**
 * A job's life in three writes, each made here and nowhere else:
 *
 *   newJob (the record, status `starting`) -> startJob (index entry, active marker, chunk 0)
 *   -> enqueueChunk k+1 after each chunk ... -> endJob (final status, then the `completed` event)
 *
 * The API creates jobs; the worker, the dead-letter handler and the reaper move them on. Every step
 * is safe to repeat: chunk tasks are deduplicated per (job, chunk), the final status is written by
 * compare-and-swap only over an unfinished job, and the `completed` event's id is fixed per job.
 */
import { jobIndexKey } from '../api/keys.js';
import { activeJobKey } from '../keys.js';
import type { Manifest } from '../model/manifest.js';
import { recordJobEnded } from '../observability/metrics.js';
import type { TaskQueue } from '../queue/task-queue.js';
import { chunkTaskDedupId, type ChunkTask } from '../schemas/chunk-task.js';
import { isTerminal, type Job, type JobParent, type JobRequest } from '../schemas/job.js';
import type { ObjectStore } from '../store/object-store.js';
import { emitJobEvent } from '../webhooks/emit.js';
import { updateJob } from './job-store.js';

/** What a new job is made of; everything else in its record starts the same for every job. */
export interface NewJobSpec {
  id: string;
  tenant: string;
  request: JobRequest;
  /** The model the job is accepted for; it makes the job to the end. */
  manifest: Pick<Manifest, 'name' | 'onnx_sha256' | 'chunk_frames'>;
  /** Frames per chunk (a continuation keeps its parent's); default: the manifest's. */
  chunkFrames?: number;
  parent?: JobParent;
  idempotencyKey?: string;
  now: Date;
}

/** The record of a job not started yet (status `starting`, no progress). */
export function newJob(spec: NewJobSpec): Job {
  const chunkFrames = spec.chunkFrames ?? spec.manifest.chunk_frames;
  const now = spec.now.toISOString();
  return {
    id: spec.id,
    tenant: spec.tenant,
    status: 'starting',
    request: spec.request,
    model: { name: spec.manifest.name, sha256: spec.manifest.onnx_sha256, chunk_frames: chunkFrames },
    progress: {
      chunks_done: 0,
      chunks_total: Math.ceil(spec.request.frames / chunkFrames),
      frames_done: 0,
      frames_total: spec.request.frames,
    },
    created_at: now,
    updated_at: now,
    metrics: { chunk_seconds: [] },
    outputs: {},
    cancel_requested: false,
    ...(spec.parent ? { parent: spec.parent } : {}),
    ...(spec.idempotencyKey !== undefined ? { idempotency_key: spec.idempotencyKey } : {}),
  };
}

/** The steps after job.json exists: index entry, active marker, chunk 0. Safe to repeat. */
export async function startJob(deps: { store: ObjectStore; chunkQueue: TaskQueue }, job: Job): Promise<void> {
  await deps.store.put(jobIndexKey(job.tenant, job.id, job.created_at), '');
  // Before the task: a crash between the two leaves a job the reaper finds and queues.
  await deps.store.put(activeJobKey(job.tenant, job.id), '', { contentType: 'application/octet-stream' });
  await enqueueChunk(deps.chunkQueue, job, 0);
}

/**
 * Sends "compute chunk `chunk` of the job", one task per (job, chunk) within the queue's dedup
 * window. `retry` names a later send of the same chunk that must not be deduplicated away (the reaper's).
 */
export async function enqueueChunk(
  chunkQueue: TaskQueue,
  job: Pick<Job, 'id' | 'tenant'>,
  chunk: number,
  opts: { now?: Date; retry?: string } = {},
): Promise<ChunkTask> {
  const task: ChunkTask = { job: job.id, tenant: job.tenant, chunk, enqueued_at: (opts.now ?? new Date()).toISOString() };
  const dedupId = opts.retry === undefined ? chunkTaskDedupId(task) : `${chunkTaskDedupId(task)}:${opts.retry}`;
  await chunkQueue.send(JSON.stringify(task), { groupId: job.id, dedupId });
  return task;
}

/** How a job ends: its final status and what goes with it. */
export type JobEnding =
  | { status: 'succeeded'; outputs: Job['outputs'] }
  | { status: 'failed'; error: NonNullable<Job['error']> }
  | { status: 'canceled' };

export interface EndJobDeps {
  store: ObjectStore;
  webhookQueue: TaskQueue;
}

/**
 * Moves an unfinished job to its final status (compare-and-swap), counts it, then queues its
 * `completed` event. `ending` may depend on the stored record (a cancel accepted meanwhile wins).
 * The event also goes out when the job already ended this same way: a repeat after a crash between
 * the write and the send gets it out, and its fixed id keeps it single. Returns the stored job, or
 * null when it is gone.
 */
export async function endJob(
  deps: EndJobDeps,
  ref: { tenant: string; id: string },
  ending: JobEnding | ((job: Job) => JobEnding),
  now: () => Date = () => new Date(),
): Promise<Job | null> {
  const decide = typeof ending === 'function' ? ending : () => ending;
  let ended: JobEnding['status'] | undefined;
  const updated = await updateJob(deps.store, ref.tenant, ref.id, (j) => {
    ended = undefined;
    if (isTerminal(j.status)) return null;
    const end = decide(j);
    ended = end.status;
    const at = now();
    j.status = end.status;
    j.completed_at = at.toISOString();
    if (end.status === 'failed') j.error = end.error;
    if (end.status === 'succeeded') {
      j.outputs = end.outputs;
      // Never negative: a worker whose clock is behind the API's must still be able to end the job.
      j.metrics.total_s = Math.max(0, Math.round((at.getTime() - Date.parse(j.created_at)) / 10) / 100);
    }
    return j;
  });
  if (!updated) return null;
  const job = updated.job;
  if (ended) recordJobEnded(ended);
  if (ended || endedAs(job, decide(job))) await emitJobEvent(deps.webhookQueue, job, 'completed');
  return job;
}

/** Whether a finished job ended as `end` says (same status; for a failure, the same code). */
function endedAs(job: Job, end: JobEnding): boolean {
  if (job.status !== end.status) return false;
  return end.status !== 'failed' || job.error?.code === end.error.code;
}
