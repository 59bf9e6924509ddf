/**
 * The chunk step: compute chunk k of a job, persist its cache segment and frames, advance the job.
 *
 *   read job (canceled? done already?) -> assemble cache from segments -> denoise chunk k
 *   -> t = 0 pass on the clean chunk -> write segment k (write-once), frames, clean copy and HLS
 *   segment -> compare-and-swap job.json -> send task k+1, or finalize -> webhook events
 *
 * A large segment (the paper's size) is stored in the background, and its t = 0 pass runs while
 * the job advances: once the frames are stored, the segment can be rebuilt from them.
 *
 * Every step is idempotent: a task delivered twice, or retried after a crash at any point, finds
 * what an earlier attempt wrote and produces the same bytes (noise is a function of (seed, k)).
 */
import { advanceCacheWindow, emptyWindow } from '../shared/cache/assemble.js';
import { PREFIX_CHUNK } from '../shared/cache/segment.js';
import { updateJob, readJob } from '../shared/jobs/job-store.js';
import { endJob, enqueueChunk } from '../shared/jobs/lifecycle.js';
import { cacheSegmentKey, frameKey, inputFrameKey, streamSegmentKey } from '../shared/keys.js';
import { encodeTsSegment, TS_SEGMENT_TYPE } from '../shared/media/hls.js';
import { framesToPngs } from '../shared/media/png.js';
import { frameFloats, kvFrameBytes } from '../shared/model/manifest.js';
import { recordChunkSeconds, recordQueueWait } from '../shared/observability/metrics.js';
import type { TaskQueue } from '../shared/queue/task-queue.js';
import { ddimSchedule } from '../shared/sampler/schedule.js';
import { denoise } from '../shared/sampler/ddim.js';
import { gaussianNoise } from '../shared/sampler/noise.js';
import type { ChunkTask } from '../shared/schemas/chunk-task.js';
import { isTerminal, type Job } from '../shared/schemas/job.js';
import type { ObjectStore } from '../shared/store/object-store.js';
import { emitJobEvent } from '../shared/webhooks/emit.js';
import { assertEarlierFramesKept, decodeStoredPngs, f16Precision, writeCleanCopy } from './clean-copy.js';
import { attentionShape, cacheWritePass, defersSegment, readWindow, segmentKey, stepAfter, writeSegment, type CacheDeps } from './cache-window.js';
import { ChunkFailure, OutOfOrderError } from './errors.js';
import { finalizeJob } from './finalize.js';
import { firstFrameOf, framesOfChunk, geometry, jobPlan, type JobPlan } from './job-plan.js';
import { log } from './log.js';
import { computeLatentChunk } from './latent-chunk.js';
import { isLatentModel, type ServedModel } from './served-model.js';
import { windowBytes, type WindowMemo } from './window-memo.js';

export interface ChunkDeps extends Omit<CacheDeps, 'model'> {
  store: ObjectStore;
  chunkQueue: TaskQueue;
  webhookQueue: TaskQueue;
  /** A format-1 step graph or a format-2 latent model (served-model.ts). */
  model: ServedModel;
  /** Each job's cache window, kept for its next chunk; absent = always assemble from the store. */
  windowMemo?: WindowMemo;
}

/** The chunk step's dependencies with a format-1 (pixel-space) model. */
export type PixelDeps = ChunkDeps & CacheDeps;

export type ChunkOutcome = 'computed' | 'finalized' | 'skipped' | 'canceled';

/**
 * What a chunk's compute leaves for the job step: the frames its cache window held, and, where the
 * chunk's cache segment is stored in the background, its cache write (the t = 0 pass, the window's
 * advance, the segment's start), still running; it settles to the error it met, if any, never rejects.
 */
export interface ComputedChunk {
  P: number;
  cacheWrite?: Promise<unknown>;
}

/** Chunk k of a format-1 (pixel-space) model. */
async function computePixelChunk(deps: PixelDeps, job: Job, plan: JobPlan, k: number, phases: PhaseTimer, signal?: AbortSignal): Promise<ComputedChunk> {
  const { store, model } = deps;
  const m = model.manifest;
  // 2. Conditioning: the K/V of at most P_max earlier frames: the window this worker left after
  //    chunk k-1, or assembled from the newest segments (a damaged one is rebuilt: cache-window.ts).
  const firstFrame = firstFrameOf(plan, k);
  if (k === 0 && plan.initFrames > 0) await writePrefixSegment(deps, job, plan);
  const window = deps.windowMemo?.take(jobKey(job), firstFrame) ?? await readWindow(deps, job, plan, firstFrame);
  // What the video needs from earlier chunks is checked before anything of this one is stored: a
  // frame gone with its clean copy fails the job now, not at finalize after every remaining chunk.
  // The listing runs beside the denoising (its latency is not in the gap before the first model call).
  const earlierKept = assertEarlierFramesKept(deps, job, plan, k);
  earlierKept.catch(() => {}); // awaited once the chunk is denoised
  const P = window.frames;
  phases.mark('cache_read');

  // 3. Denoise chunk k, every step attending to the same cache (cache sharing). The last chunk makes
  //    only the frames the request keeps: with causal attention and the same noise, they are the
  //    first frames of the full chunk, at a fraction of its cost.
  const l = plan.chunkFrames;
  const keep = framesOfChunk(plan, k);
  //    The chunk is also one HLS media segment, so a viewer can watch the video as it grows: ffmpeg
  //    starts in its own process once the first model call is under way (starting a process is a
  //    fork of this one, tens of milliseconds at the paper's size: not in the gap between two
  //    chunks' model calls) and takes the frames when they are made; a failed chunk ends it.
  let framesMade!: (frames: Float32Array) => void, framesFailed!: (err: unknown) => void;
  const framesToCome = new Promise<Float32Array>((resolve, reject) => { framesMade = resolve; framesFailed = reject; });
  framesToCome.catch(() => {}); // a chunk that fails before its first model call never starts ffmpeg
  let modelStarted!: () => void;
  let denoised = 0;
  const stream = new Promise<void>((resolve) => { modelStarted = resolve; })
    .then(nextTurn)
    .then(() => encodeTsSegment(framesToCome, geometry(m), { startFrame: k * l, signal }))
    .then((ts) => store.put(streamSegmentKey(job.tenant, job.id, k), ts, { contentType: TS_SEGMENT_TYPE }))
    .then(() => { phases.spans.stream = Math.round(performance.now() - denoised); });
  stream.catch(() => {}); // awaited below, once the chunk's frames exist
  // Rounded to fp16 once, and used so for everything after: the lossless copy stored below holds
  // exactly these floats, so a segment or frame rebuilt from it is the one made here (clean-copy.ts).
  const clean = f16Precision(await denoise({
    noise: gaussianNoise(l * frameFloats(m), { seed: job.request.seed, chunk: plan.chunkOffset + k }).subarray(0, keep * frameFloats(m)),
    steps: ddimSchedule(m.schedule.alphas_cumprod, job.request.steps),
    prediction: m.prediction,
    range: m.frame.range,
    guidance: plan.guided ? job.request.guidance : undefined,
    model: async (x, t, rows) => {
      const call = model.step(stepAfter(window, m, plan, firstFrame, x, t, rows), 'prediction');
      modelStarted();
      return (await call).prediction;
    },
    signal,
  }).catch((err) => { framesFailed(err); throw err; })); // [keep, C, H, W]
  modelStarted(); // no model call at all (zero steps): the stream still starts
  await earlierKept.catch((err) => { framesFailed(err); throw err; });
  framesMade(clean);
  denoised = performance.now();
  phases.mark('denoise');

  // 4. Cache write: the t = 0 pass over the clean chunk gives its K/V for every later chunk (with
  //    the manifest's context noise: over the lightly noised chunk, at t = context_t). The window
  //    then moves on by this chunk's frames, ready for chunk k+1 on this worker.
  //    A small segment is stored before the job advances (a crash then never costs a rebuild). A
  //    large one is stored in the background, and the job does not wait for its t = 0 pass either:
  //    the job advances and the next task is sent while the pass runs (the next chunk's model calls
  //    wait for neither; a crash before the segment lands leaves it missing, and the next reader
  //    rebuilds it from the frames stored below).
  // 5. Frames of this chunk, viewable while the job runs; encoded and stored while the t = 0 pass
  //    runs on the model's threads.
  const storing = performance.now();
  const last = k + 1 >= plan.chunksTotal;
  const background = !last && defersSegment(deps, l * kvFrameBytes(m, plan.rows));
  const cacheWrite = last
    ? Promise.resolve()
    : cacheWritePass(model, job, plan, clean, k, firstFrame, window).then(async (kv) => {
      const advancing = performance.now();
      phases.spans.kv_pass = Math.round(advancing - storing);
      if (keepsWindow(deps, job, plan)) deps.windowMemo!.put(jobKey(job), advanceCacheWindow(window, kv, firstFrame, l, m.p_max, attentionShape(m, plan)));
      phases.spans.advance = Math.round(performance.now() - advancing);
      if (!background) return writeSegment(deps, job, plan, k, firstFrame, kv);
      // At most one chunk's K/V waiting to be stored; the previous one has had a whole chunk to land.
      await deps.segmentWrites!.drain();
      // Nothing else holds the K/V now (the window took a copy): handed over, to be hashed on a second thread.
      deps.segmentWrites!.start(segmentKey(job, k), () => writeSegment(deps, job, plan, k, firstFrame, kv, { handOver: true }), { job: job.id, chunk: k });
    });
  // The PNGs are encoded on this thread once the t = 0 pass is under way.
  const framesStored = nextTurn().then(() => Promise.all([
    writeCleanCopy(store, job, k, clean, keep),
    ...framesToPngs(clean, geometry(m)).map((png, i) => store.put(frameKey(job.tenant, job.id, k, i), png, { contentType: 'image/png' })),
  ])).then(() => { phases.spans.frames = Math.round(performance.now() - storing); });
  if (background) {
    const settled = cacheWrite.then(() => undefined, (err: unknown) => err ?? new Error('cache write failed'));
    await Promise.all([stream, framesStored]);
    phases.mark('write');
    return { P, cacheWrite: settled };
  }
  await Promise.all([cacheWrite, stream, framesStored]);
  phases.mark('write');
  return { P };
}

/**
 * Runs chunk task `task` to its end. `recorded`, if given, is called once the chunk is recorded on
 * the job and its next step sent, while a background cache write may still run: the task can be
 * deleted then (the worker's queue round trip overlaps the write). The step returns after both.
 * It is not called when the step ends otherwise (skipped, canceled, a redelivery, a failure).
 */
export async function runChunkStep(deps: ChunkDeps, task: ChunkTask, signal?: AbortSignal, recorded?: (outcome: ChunkOutcome) => Promise<void>): Promise<ChunkOutcome> {
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
  // One video, one model: a job is made to the end by the model it was accepted for.
  if (job.model.sha256 !== m.onnx_sha256) {
    throw new ChunkFailure('model_mismatch', `job was accepted for model ${job.model.name} (${job.model.sha256}); this worker serves ${m.name} (${m.onnx_sha256})`);
  }
  if (k > job.progress.chunks_done) throw new OutOfOrderError(job.id, k, job.progress.chunks_done);
  if (k === 0) await emitJobEvent(deps.webhookQueue, job, 'start');

  // 2-5. The chunk itself, as the model's kind makes it (pixel frames here, latent frames in
  //      latent-chunk.ts): cache window, denoise, cache write, frames, clean copy, HLS segment.
  const { P, cacheWrite } = isLatentModel(deps.model)
    ? { P: await computeLatentChunk({ ...deps, model: deps.model }, job, plan, k, phases, signal) }
    : await computePixelChunk({ ...deps, model: deps.model }, job, plan, k, phases, signal);
  const seconds = (performance.now() - started) / 1000;
  try {
    const outcome = await recordChunk(deps, job, plan, k, seconds, phases);
    await recorded?.(outcome);
    return outcome;
  } finally {
    // A background cache write ends before the task does (this worker's next chunk takes the
    // window it leaves). Failing after the job advanced costs only time: the next reader rebuilds
    // the segment from the stored frames.
    const error = await cacheWrite;
    if (error) log.error('cache write failed after the job advanced; the next reader rebuilds the segment', { job: job.id, chunk: k, error: String(error) });
    if (cacheWrite) phases.mark('cache_write');
    log.debug('chunk phases', { job: job.id, chunk: k, cache_frames: P, ms: phases.spans });
  }
}

/** 6-7. Chunk k is made: advance the job by compare-and-swap, then send task k+1 or finalize. */
async function recordChunk(deps: ChunkDeps, job: Job, plan: JobPlan, k: number, seconds: number, phases: PhaseTimer): Promise<ChunkOutcome> {
  const l = plan.chunkFrames;
  // A concurrent duplicate that got there first wins.
  let advanced = false;
  const updated = await updateJob(deps.store, job.tenant, job.id, (j) => {
    advanced = false;
    if (j.progress.chunks_done !== k || isTerminal(j.status)) return null;
    advanced = true;
    const now = new Date().toISOString();
    j.status = 'processing';
    j.started_at ??= now;
    j.progress.chunks_done = k + 1;
    j.progress.frames_done = Math.min(plan.framesTotal, (k + 1) * l);
    j.metrics.chunk_seconds[k] = round3(seconds);
    if (k === 0) j.metrics.queue_wait_s = round3(Math.max(0, (Date.now() - Date.parse(j.created_at)) / 1000 - seconds));
    return j;
  });
  // Declined: the job is gone or ended meanwhile (nothing to do), or a duplicate recorded chunk k
  // first. That duplicate may have died before sending task k+1, so this one makes sure the next
  // step exists (the send is deduplicated; a finalize is conditional). No event from here.
  if (!updated) return 'skipped';
  if (!advanced) {
    if (isTerminal(updated.job.status) || updated.job.progress.chunks_done <= k) return 'skipped';
    await resumeAfter(deps, updated.job, plan, k);
    return 'skipped';
  }
  job = updated.job;
  recordChunkSeconds(seconds);
  if (k === 0 && job.metrics.queue_wait_s !== undefined) recordQueueWait(job.metrics.queue_wait_s);
  await emitJobEvent(deps.webhookQueue, job, 'output', { chunk: k });
  phases.mark('job_update');
  // 7. Next chunk, or the end of the video.
  return resumeAfter(deps, job, plan, k);
}

/** After chunk k is recorded: enqueue k+1 (deduplicated) or finalize. Safe to repeat. */
async function resumeAfter(deps: ChunkDeps, job: Job, plan: JobPlan, k: number): Promise<ChunkOutcome> {
  if (k + 1 < plan.chunksTotal) {
    await enqueueChunk(deps.chunkQueue, job, k + 1);
    return k + 1 === job.progress.chunks_done ? 'computed' : 'skipped';
  }
  await finalizeJob(deps, job, plan);
  return 'finalized';
}

async function cancel(deps: ChunkDeps, job: Job): Promise<ChunkOutcome> {
  await endJob(deps, job, { status: 'canceled' });
  return 'canceled';
}

/** The starting frames' K/V (segment "prefix"), computed once by chunk 0. */
async function writePrefixSegment(deps: PixelDeps, job: Job, plan: JobPlan): Promise<void> {
  const { store, model } = deps;
  if (await store.head(cacheSegmentKey(job.tenant, job.id, 'prefix'))) return;
  const keys = job.request.init_frames.keys.map((_, i) => inputFrameKey(job.tenant, job.id, i));
  const pngs = await Promise.all(keys.map(async (key, i) => {
    const obj = await store.get(key);
    if (!obj) throw new ChunkFailure('input_missing', `starting frame ${i} is missing from the store`);
    return obj.body;
  }));
  const frames = decodeStoredPngs(deps, pngs, keys);
  const kv = await cacheWritePass(model, job, plan, frames, PREFIX_CHUNK, 0, emptyWindow(model.manifest.cache_dtype));
  await writeSegment(deps, job, plan, PREFIX_CHUNK, 0, kv);
  if (keepsWindow(deps, job, plan)) {
    deps.windowMemo!.put(jobKey(job), advanceCacheWindow(emptyWindow(model.manifest.cache_dtype), kv, 0, plan.initFrames, model.manifest.p_max, attentionShape(model.manifest, plan)));
  }
}

/** Whether this worker keeps the job's window for its next chunk; no window is advanced that would be dropped. */
function keepsWindow(deps: PixelDeps, job: Job, plan: JobPlan): boolean {
  return deps.windowMemo?.keeps(windowBytes(deps.model.manifest, plan.rows), { job: job.id, model: deps.model.manifest.name, rows: plan.rows }) ?? false;
}

const jobKey = (job: Job) => `${job.tenant}/${job.id}`;

/** Resolves after the work already queued on the event loop (a model call just dispatched) has had its turn. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

const round3 = (v: number) => Math.round(v * 1000) / 1000;

/** Milliseconds spent in each phase of a chunk, for the debug log. */
export class PhaseTimer {
  readonly spans: Record<string, number> = {};
  private last = performance.now();

  mark(name: string): void {
    const now = performance.now();
    this.spans[name] = Math.round(now - this.last);
    this.last = now;
  }
}
