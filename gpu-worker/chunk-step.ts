/**
 * The chunk step: compute chunk k of a job, persist its cache segment and frames, advance the job.
 *
 *   read job (canceled? done already?) -> assemble cache from segments -> denoise chunk k
 *   -> t = 0 pass on the clean chunk -> write segment k (write-once) and frames
 *   -> compare-and-swap job.json -> send task k+1, or finalize -> webhook events
 *
 * Every step is idempotent: a task delivered twice, or retried after a crash at any point, finds
 * what an earlier attempt wrote and produces the same bytes (noise is a function of (seed, k)).
 */
import { advanceCacheWindow, assembleAttentionCache, planCacheRead, type AssembledCache, type SegmentInfo } from '../shared/cache/assemble.js';
import { CacheError } from '../shared/cache/errors.js';
import { decodeSegment, encodeSegment, PREFIX_CHUNK } from '../shared/cache/segment.js';
import { updateJob, readJob } from '../shared/jobs/job-store.js';
import { CACHE_SEGMENT_TAGS, cacheSegmentKey, frameKey, inputFrameKey } from '../shared/keys.js';
import { framesToPngs, pngsToFrames } from '../shared/media/png.js';
import { frameFloats, type Manifest } from '../shared/model/manifest.js';
import type { TaskQueue } from '../shared/queue/task-queue.js';
import { contextFrames } from '../shared/sampler/context.js';
import { ddimSchedule } from '../shared/sampler/schedule.js';
import { denoise } from '../shared/sampler/ddim.js';
import { gaussianNoise } from '../shared/sampler/noise.js';
import { chunkTaskDedupId, type ChunkTask } from '../shared/schemas/chunk-task.js';
import { isTerminal, type Job } from '../shared/schemas/job.js';
import { PreconditionFailedError } from '../shared/store/errors.js';
import type { ObjectStore } from '../shared/store/object-store.js';
import { emitJobEvent } from '../shared/webhooks/emit.js';
import { ChunkFailure, OutOfOrderError } from './errors.js';
import { finalizeJob } from './finalize.js';
import { geometry, jobPlan, type JobPlan } from './job-plan.js';
import { log } from './log.js';
import type { KvData, ModelSession } from './model-session.js';
import type { WindowMemo } from './window-memo.js';

export interface ChunkDeps {
  store: ObjectStore;
  chunkQueue: TaskQueue;
  webhookQueue: TaskQueue;
  model: ModelSession;
  /** Each job's cache window, kept for its next chunk; absent = always assemble from the store. */
  windowMemo?: WindowMemo;
}

export type ChunkOutcome = 'computed' | 'finalized' | 'skipped' | 'canceled';

export async function runChunkStep(deps: ChunkDeps, task: ChunkTask, signal?: AbortSignal): Promise<ChunkOutcome> {
  const { store, model } = deps;
  const m = model.manifest;
  const k = task.chunk;
  const started = performance.now();
  const phases = new PhaseTimer();

  // 1. The job decides: gone, finished, canceled, or this chunk already done (a redelivery).
  const current = await readJob(store, task.tenant, task.job);
  if (!current) return 'skipped';
  let job = current.job;
  // Finished already: repeat only the (deduplicated) completion event, in case a crash lost it.
  if (isTerminal(job.status)) {
    await emitJobEvent(deps.webhookQueue, job, 'completed');
    return 'skipped';
  }
  if (job.cancel_requested) return cancel(deps, job);
  const plan = jobPlan(job, m);
  if (k < job.progress.chunks_done) return resumeAfter(deps, job, plan, k);
  if (k > job.progress.chunks_done) throw new OutOfOrderError(job.id, k, job.progress.chunks_done);
  if (k === 0) await emitJobEvent(deps.webhookQueue, job, 'start');

  // 2. Conditioning: the K/V of at most P_max earlier frames: the window this worker left after
  //    chunk k-1, or assembled from the newest segments.
  const firstFrame = plan.initFrames + k * plan.chunkFrames;
  if (k === 0 && plan.initFrames > 0) await writePrefixSegment(deps, job, plan);
  const window = deps.windowMemo?.take(jobKey(job), firstFrame) ?? await readCache(deps, job, plan, firstFrame);
  const { cache, frames: P } = window;
  phases.mark('cache_read');

  // 3. Denoise chunk k, every step attending to the same cache (cache sharing).
  const l = plan.chunkFrames;
  const input = (x: Float32Array, t: number, rows: number) =>
    ({ x, t: new Float32Array(rows * l).fill(t), labels: plan.labels, pos: firstFrame, cache, cacheFrames: P, rows, frames: l });
  const clean = await denoise({
    noise: gaussianNoise(l * frameFloats(m), { seed: job.request.seed, chunk: k }),
    steps: ddimSchedule(m.schedule.alphas_cumprod, job.request.steps),
    prediction: m.prediction,
    range: m.frame.range,
    guidance: plan.guided ? job.request.guidance : undefined,
    model: async (x, t, rows) => (await model.step(input(x, t, rows), 'prediction')).prediction,
    signal,
  }); // [l, C, H, W]
  phases.mark('denoise');

  // 4. Cache write: the t = 0 pass over the clean chunk gives its K/V for every later chunk (with
  //    the manifest's context noise: over the lightly noised chunk, at t = context_t).
  // 5. Frames of this chunk (only those inside the requested length), viewable while the job runs;
  //    encoded and stored while the t = 0 pass runs on the model's threads.
  //    The window then moves on by this chunk's frames, ready for chunk k+1 on this worker.
  const segment = k + 1 < plan.chunksTotal
    ? model.step(input(contextRows(clean, job, plan, m, k), m.context_t, plan.rows), 'kv').then(async ({ kv }) => {
      await writeSegment(deps, cacheSegmentKey(job.tenant, job.id, k), kv, segmentMeta(job, m, plan, k, firstFrame, l));
      deps.windowMemo?.put(jobKey(job), advanceCacheWindow(window, kv, firstFrame, l, m.p_max, attentionShape(m, plan)));
    })
    : Promise.resolve();
  const keep = Math.min(l, plan.framesTotal - k * l);
  const pngs = framesToPngs(clean.subarray(0, keep * frameFloats(m)), geometry(m));
  await Promise.all([segment, ...pngs.map((png, i) => store.put(frameKey(job.tenant, job.id, k, i), png, { contentType: 'image/png' }))]);
  phases.mark('write');

  // 6. Advance the job by compare-and-swap; a concurrent duplicate that got there first wins.
  const seconds = (performance.now() - started) / 1000;
  const updated = await updateJob(store, job.tenant, job.id, (j) => {
    if (j.progress.chunks_done !== k || isTerminal(j.status)) return null;
    const now = new Date().toISOString();
    j.status = 'processing';
    j.started_at ??= now;
    j.progress.chunks_done = k + 1;
    j.progress.frames_done = Math.min(plan.framesTotal, (k + 1) * l);
    j.metrics.chunk_seconds[k] = round3(seconds);
    if (k === 0) j.metrics.queue_wait_s = round3(Math.max(0, (Date.now() - Date.parse(j.created_at)) / 1000 - seconds));
    return j;
  });
  if (!updated) return 'skipped';
  job = updated.job;
  await emitJobEvent(deps.webhookQueue, job, 'output', { chunk: k });
  phases.mark('job_update');
  log.debug('chunk phases', { job: job.id, chunk: k, cache_frames: P, ms: phases.spans });

  // 7. Next chunk, or the end of the video.
  return resumeAfter(deps, job, plan, k);
}

/** After chunk k is recorded: enqueue k+1 (deduplicated) or finalize. Safe to repeat. */
async function resumeAfter(deps: ChunkDeps, job: Job, plan: JobPlan, k: number): Promise<ChunkOutcome> {
  if (k + 1 < plan.chunksTotal) {
    const next = { job: job.id, tenant: job.tenant, chunk: k + 1, enqueued_at: new Date().toISOString() };
    await deps.chunkQueue.send(JSON.stringify(next), { groupId: job.id, dedupId: chunkTaskDedupId(next) });
    return k + 1 === job.progress.chunks_done ? 'computed' : 'skipped';
  }
  await finalizeJob(deps, job, plan);
  return 'finalized';
}

async function cancel(deps: ChunkDeps, job: Job): Promise<ChunkOutcome> {
  const updated = await updateJob(deps.store, job.tenant, job.id, (j) => {
    if (isTerminal(j.status)) return null;
    j.status = 'canceled';
    j.completed_at = new Date().toISOString();
    return j;
  });
  if (updated?.job.status === 'canceled') await emitJobEvent(deps.webhookQueue, updated.job, 'completed');
  return 'canceled';
}

/** The starting frames' K/V (segment "prefix"), computed once by chunk 0. */
async function writePrefixSegment(deps: ChunkDeps, job: Job, plan: JobPlan): Promise<void> {
  const { store, model } = deps;
  const m = model.manifest;
  const key = cacheSegmentKey(job.tenant, job.id, 'prefix');
  if (await store.head(key)) return;
  const pngs = await Promise.all(job.request.init_frames.keys.map(async (_, i) => {
    const obj = await store.get(inputFrameKey(job.tenant, job.id, i));
    if (!obj) throw new ChunkFailure('input_missing', `starting frame ${i} is missing from the store`);
    return obj.body;
  }));
  const n = plan.initFrames;
  const { kv } = await model.step({
    x: contextRows(pngsToFrames(pngs, geometry(m)), job, plan, m, PREFIX_CHUNK), t: new Float32Array(plan.rows * n).fill(m.context_t), labels: plan.labels, pos: 0,
    cache: new Float32Array(0), cacheFrames: 0, rows: plan.rows, frames: n,
  }, 'kv');
  await writeSegment(deps, key, kv, segmentMeta(job, m, plan, PREFIX_CHUNK, 0, n));
  const empty = { cache: new Float32Array(0), frames: 0, firstFrame: 0 };
  deps.windowMemo?.put(jobKey(job), advanceCacheWindow(empty, kv, 0, n, m.p_max, attentionShape(m, plan)));
}

/**
 * Stores a segment once. The graph emits K/V in the stored dtype, so the window built from `kv`
 * holds exactly what a reader of the segment gets back.
 */
async function writeSegment(deps: ChunkDeps, key: string, kv: KvData, meta: ReturnType<typeof segmentMeta>): Promise<void> {
  await putOnce(deps.store, key, encodeSegment(kv, meta, deps.model.manifest.kv_dtype));
}

/** Reads only the newest segments covering min(available, P_max) frames before `endFrame`. */
async function readCache(deps: ChunkDeps, job: Job, plan: JobPlan, endFrame: number): Promise<AssembledCache> {
  const m = deps.model.manifest;
  const available: SegmentInfo[] = [];
  if (plan.initFrames > 0) available.push({ chunk: PREFIX_CHUNK, firstFrame: 0, frames: plan.initFrames });
  // Only the last few chunks can fall inside the window; older ones are never considered.
  const oldest = Math.max(0, Math.floor((endFrame - plan.initFrames - m.p_max) / plan.chunkFrames));
  for (let j = oldest; plan.initFrames + (j + 1) * plan.chunkFrames <= endFrame; j++) {
    available.push({ chunk: j, firstFrame: plan.initFrames + j * plan.chunkFrames, frames: plan.chunkFrames });
  }
  const readPlan = planCacheRead(available, m.p_max, { endFrame, startFrame: available[0]?.firstFrame ?? endFrame });
  const frameShape = [m.depth, 2, plan.rows, m.tokens_per_frame, m.width];
  const data = await Promise.all(readPlan.segments.map(async (seg) => {
    const key = cacheSegmentKey(job.tenant, job.id, seg.chunk === PREFIX_CHUNK ? 'prefix' : seg.chunk);
    const obj = await deps.store.get(key);
    if (!obj) throw new ChunkFailure('cache_missing', `cache segment ${key} is missing`);
    try {
      return decodeSegment(obj.body, { modelSha: m.onnx_sha256, job: job.id, chunk: seg.chunk, frameShape }).data;
    } catch (err) {
      if (err instanceof CacheError) throw new ChunkFailure('cache_corrupt', `cache segment ${key}: ${err.message}`, err);
      throw err;
    }
  }));
  return assembleAttentionCache(readPlan, data, attentionShape(m, plan));
}

/** One frame's K/V as head_dim runs (depth * 2 * rows * tokens * heads of them). */
const attentionShape = (m: Manifest, plan: JobPlan) => ({ runs: m.depth * 2 * plan.rows * m.tokens_per_frame * m.heads, headDim: m.head_dim });

const jobKey = (job: Job) => `${job.tenant}/${job.id}`;

function segmentMeta(job: Job, m: Manifest, plan: JobPlan, chunk: number, firstFrame: number, frames: number) {
  return {
    modelSha: m.onnx_sha256, job: job.id, chunk, firstFrame,
    shape: [frames, m.depth, 2, plan.rows, m.tokens_per_frame, m.width] as const,
  };
}

/** Write-once: an existing object means an earlier attempt of this same step already wrote it. */
async function putOnce(store: ObjectStore, key: string, body: Buffer): Promise<void> {
  try {
    await store.put(key, body, { ifNoneMatch: '*', contentType: 'application/octet-stream', tags: CACHE_SEGMENT_TAGS });
  } catch (err) {
    if (!(err instanceof PreconditionFailedError)) throw err;
  }
}

/** The cache-write pass's input: frames as conditioning sees them (context noise), one copy per row. */
function contextRows(frames: Float32Array, job: Job, plan: JobPlan, m: Manifest, chunk: number): Float32Array {
  return repeatRows(contextFrames(frames, m, { seed: job.request.seed, chunk }), plan.rows);
}

function repeatRows(x: Float32Array, rows: number): Float32Array {
  if (rows === 1) return x;
  const out = new Float32Array(x.length * rows);
  for (let r = 0; r < rows; r++) out.set(x, r * x.length);
  return out;
}

const round3 = (v: number) => Math.round(v * 1000) / 1000;

/** Milliseconds spent in each phase of a chunk, for the debug log. */
class PhaseTimer {
  readonly spans: Record<string, number> = {};
  private last = performance.now();

  mark(name: string): void {
    const now = performance.now();
    this.spans[name] = Math.round(now - this.last);
    this.last = now;
  }
}
