import { mkdtempSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Adapters } from '../../gpu-worker/adapters.js';
import type { ModelSession, StepFetch, StepInput } from '../../gpu-worker/model-session.js';
import type { ServedModel } from '../../gpu-worker/served-model.js';
import { ChunkWorker, type TaskEvent, type WorkerOptions } from '../../gpu-worker/worker.js';
import { createJob } from '../../shared/jobs/job-store.js';
import { inputFrameKey } from '../../shared/keys.js';
import type { Manifest } from '../../shared/model/manifest.js';
import { LocalQueue } from '../../shared/queue/local-queue.js';
import { chunkTaskDedupId } from '../../shared/schemas/chunk-task.js';
import type { Job, JobRequest } from '../../shared/schemas/job.js';
import { LocalStore } from '../../shared/store/local-store.js';

export const MODEL_DIR = path.resolve(import.meta.dirname, '../../model/artifacts/balls32-v1');

export function tempDir(prefix = 'ca2vdm-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** An embedded store and queues in `dir` (the same layout the embedded stack uses). */
export function localStack(dir: string) {
  const store = new LocalStore({ root: path.join(dir, 'store') });
  const chunkQueue = new LocalQueue({ dir: path.join(dir, 'chunk-queue'), maxReceives: 5 });
  const webhookQueue = new LocalQueue({ dir: path.join(dir, 'webhook-queue') });
  return { store, chunkQueue, webhookQueue };
}

/** Runs `body` with every model call also shown to `seen` (its input and what it fetched, if not all). */
export async function watchingSteps<T>(model: ModelSession, seen: (input: StepInput, fetch?: StepFetch) => void, body: () => Promise<T>): Promise<T> {
  const step = model.step.bind(model);
  model.step = ((input: StepInput, fetch?: StepFetch) => {
    seen(input, fetch);
    return fetch ? step(input, fetch) : step(input);
  }) as typeof model.step;
  try {
    return await body();
  } finally {
    model.step = step;
  }
}

/** Runs one worker until the queue has been idle for a moment; returns every task event. */
export async function drainQueue(stack: ReturnType<typeof localStack>, model: ServedModel, opts: Partial<WorkerOptions> = {}): Promise<TaskEvent[]> {
  const events: TaskEvent[] = [];
  const worker = new ChunkWorker({ ...stack, model, waitSec: 0.3, onTask: (e) => events.push(e), ...opts });
  const running = worker.run();
  let idle = 0;
  while (idle < 3) {
    await new Promise((r) => setTimeout(r, 300));
    idle = (await stack.chunkQueue.depth()) === 0 ? idle + 1 : 0;
  }
  await worker.close();
  await running;
  return events;
}

/** Writes a job record (and its starting frames) and enqueues chunk 0, as the API does. */
export async function submitJob(
  stack: Pick<Adapters, 'store' | 'chunkQueue'>,
  manifest: Manifest,
  opts: Partial<JobRequest> & { id?: string; initPngs?: Buffer[] } = {},
): Promise<Job> {
  const now = new Date().toISOString();
  const id = opts.id ?? `job${Math.random().toString(36).slice(2, 10)}`;
  const tenant = 'tenant1';
  const pngs = opts.initPngs ?? [];
  const keys = pngs.map((_, i) => inputFrameKey(tenant, id, i));
  await Promise.all(pngs.map((png, i) => stack.store.put(keys[i], png)));
  const frames = opts.frames ?? 8;
  const job: Job = {
    id, tenant, status: 'starting',
    request: {
      frames, seed: opts.seed ?? 7, label: opts.label ?? 1, guidance: opts.guidance ?? 2, steps: opts.steps ?? 4,
      init_frames: { count: keys.length, keys }, webhook_events_filter: ['start', 'output', 'completed'],
      ...(opts.webhook ? { webhook: opts.webhook } : {}),
    },
    model: { name: manifest.name, sha256: manifest.onnx_sha256, chunk_frames: manifest.chunk_frames },
    progress: { chunks_done: 0, chunks_total: Math.ceil(frames / manifest.chunk_frames), frames_done: 0, frames_total: frames },
    created_at: now, updated_at: now, metrics: { chunk_seconds: [] }, outputs: {}, cancel_requested: false,
  };
  await createJob(stack.store, job);
  const task = { job: id, tenant, chunk: 0 };
  await stack.chunkQueue.send(JSON.stringify(task), { groupId: id, dedupId: chunkTaskDedupId(task) });
  return job;
}
