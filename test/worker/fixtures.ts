import { mkdtempSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Adapters } from '../../gpu-worker/adapters.js';
import { geometry } from '../../gpu-worker/job-plan.js';
import type { ModelSession, StepFetch, StepInput } from '../../gpu-worker/model-session.js';
import type { ServedModel } from '../../gpu-worker/served-model.js';
import { ChunkWorker, type TaskEvent, type WorkerOptions } from '../../gpu-worker/worker.js';
import { createJob } from '../../shared/jobs/job-store.js';
import { newJob, startJob } from '../../shared/jobs/lifecycle.js';
import { inputFrameKey } from '../../shared/keys.js';
import { frameFloats, parseManifest, type Manifest } from '../../shared/model/manifest.js';
import { CHUNK_MAX_RECEIVES } from '../../shared/queue/constants.js';
import { LocalQueue } from '../../shared/queue/local-queue.js';
import type { Job, JobRequest } from '../../shared/schemas/job.js';
import { LocalStore } from '../../shared/store/local-store.js';

export const MODEL_DIR = path.resolve(import.meta.dirname, '../../model/artifacts/balls32-v1');

/** The test model's manifest, read once: frame sizes in tests come from it, never from literals. */
export const MANIFEST = parseManifest(JSON.parse(readFileSync(path.join(MODEL_DIR, 'manifest.json'), 'utf8')), MODEL_DIR);
/** One frame of the test model: channels, height, width, range. */
export const GEOMETRY = geometry(MANIFEST);
/** Floats in one frame (C * H * W). */
export const FRAME_FLOATS = frameFloats(MANIFEST);

export function tempDir(prefix = 'ca2vdm-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** An embedded store and queues in `dir` (the same layout the embedded stack uses). */
export function localStack(dir: string) {
  const store = new LocalStore({ root: path.join(dir, 'store') });
  const chunkQueue = new LocalQueue({ dir: path.join(dir, 'chunk-queue'), maxReceives: CHUNK_MAX_RECEIVES });
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

/** Writes a job record (and its starting frames) and enqueues chunk 0 through the job lifecycle, as the API does. */
export async function submitJob(
  stack: Pick<Adapters, 'store' | 'chunkQueue'>,
  manifest: Manifest,
  opts: Partial<JobRequest> & { id?: string; initPngs?: Buffer[] } = {},
): Promise<Job> {
  const id = opts.id ?? `job${Math.random().toString(36).slice(2, 10)}`;
  const tenant = 'tenant1';
  const pngs = opts.initPngs ?? [];
  const keys = pngs.map((_, i) => inputFrameKey(tenant, id, i));
  await Promise.all(pngs.map((png, i) => stack.store.put(keys[i], png)));
  const job = newJob({
    id,
    tenant,
    request: {
      frames: opts.frames ?? 8, seed: opts.seed ?? 7, label: opts.label ?? 1, guidance: opts.guidance ?? 2, steps: opts.steps ?? 4,
      init_frames: { count: keys.length, keys }, webhook_events_filter: ['start', 'output', 'completed'],
      ...(opts.webhook ? { webhook: opts.webhook } : {}),
    },
    manifest,
    now: new Date(),
  });
  await createJob(stack.store, job);
  await startJob(stack, job);
  return job;
}
