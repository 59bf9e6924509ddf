/**
 * The cache side of the chunk step: the cache-write pass, storing segments, and reading the
 * window of a chunk back from the newest segments, rebuilding any damaged one on the way.
 *
 * A segment that is missing or fails its checks (checksum, truncation, header) is never used: it is
 * recomputed from the frames it was made from (the starting frames, or chunk j's lossless copy:
 * clean-copy.ts) by the same cache-write pass, after its own window (read the same way, so damage
 * further back is rebuilt first), and written back: the same bytes as the lost segment. Only when
 * a chunk's copy is gone too are its 8-bit PNG frames used (approximate; the job records it). A
 * segment written by another model, or one whose frames are gone too, fails the job with the reason.
 */
import { allocateWindow, emptyWindow, placeFrames, planCacheRead, type AssembledWindow, type SegmentInfo } from '../shared/cache/assemble.js';
import { ModelHashMismatchError } from '../shared/cache/errors.js';
import { encodeSegmentParts, PREFIX_CHUNK, type KvData } from '../shared/cache/segment.js';
import { CACHE_SEGMENT_TAGS, cacheSegmentKey, inputFrameKey, jobPrefix } from '../shared/keys.js';
import { frameFloats, framesFirstCache, type Manifest } from '../shared/model/manifest.js';
import type { ServedManifest } from '../shared/model/served.js';
import { contextFrames } from '../shared/sampler/context.js';
import type { Job } from '../shared/schemas/job.js';
import { readJob } from '../shared/jobs/job-store.js';
import { PreconditionFailedError } from '../shared/store/errors.js';
import type { ObjectStore } from '../shared/store/object-store.js';
import { chunkFramesForRebuild, decodeStoredPngs, recordRepair } from './clean-copy.js';
import { ChunkFailure } from './errors.js';
import { firstFrameOf, geometry, jobPlan, type JobPlan } from './job-plan.js';
import { log } from './log.js';
import type { StepGraph, StepInput } from './model-session.js';
import { readSegmentInto, Staging, type SegmentWrites } from './segment-io.js';

export interface CacheDeps {
  store: ObjectStore;
  model: StepGraph;
  /** This worker's segment writes still in flight; a read of one of them waits for it. */
  segmentWrites?: SegmentWrites;
  /**
   * Segments of at least this many bytes are stored in the background (SegmentWrites), and the
   * job advances without waiting for their t = 0 pass; smaller ones, which take milliseconds, are
   * stored before the job advances. Default: never deferred.
   */
  deferSegmentBytes?: number;
  /**
   * How long a reader waits for a missing newest segment of a size that is stored in the background
   * (another worker may still be storing it) before rebuilding it. Default 10 s.
   */
  segmentWaitMs?: number;
}

/** Whether segments of `bytes` are stored in the background (see CacheDeps.deferSegmentBytes). */
export const defersSegment = (deps: Pick<CacheDeps, 'segmentWrites' | 'deferSegmentBytes'>, bytes: number) => deps.segmentWrites !== undefined && bytes >= (deps.deferSegmentBytes ?? Infinity);


/**
 * The cache-write pass: the K/V of clean `frames` ([n, C, H, W], starting at global frame
 * `firstFrame`) after `window`, as conditioning sees them (the manifest's context noise, keyed by
 * `chunk`, at t = context_t; frames as they are when it is 0).
 */
export async function cacheWritePass(
  model: StepGraph, job: Job, plan: JobPlan, frames: Float32Array, chunk: number, firstFrame: number, window: AssembledWindow,
): Promise<KvData> {
  const m = model.manifest;
  const noiseChunk = chunk === PREFIX_CHUNK ? chunk : plan.chunkOffset + chunk;
  const x = repeatRows(contextFrames(frames, m, { seed: job.request.seed, chunk: noiseChunk }), plan.rows);
  const { kv } = await model.step(stepAfter(window, m, plan, firstFrame, x, m.context_t, plan.rows), 'kv');
  return kv;
}

/**
 * One call of the step graph after `window`: `rows` rows of frames `x` ([rows, F, C, H, W]) that
 * start at global frame `firstFrame`, all at timestep `t` (a denoising step, or the cache-write pass).
 */
export function stepAfter(window: AssembledWindow, m: Manifest, plan: JobPlan, firstFrame: number, x: Float32Array, t: number, rows: number): StepInput {
  const frames = x.length / (rows * frameFloats(m));
  return {
    x, t: new Float32Array(rows * frames).fill(t), labels: plan.labels, pos: firstFrame,
    cache: window.cache, cacheFrames: window.frames, rows, frames,
  };
}

/** One frame's K/V as the graph emits and a segment stores it: [depth, 2, rows, tokens, width]. */
const kvFrameShape = (m: Manifest, plan: JobPlan) => [m.depth, 2, plan.rows, m.tokens_per_frame, m.width] as const;

/**
 * Stores segment `chunk` once (write-once: an existing one is an earlier attempt's identical bytes):
 * the header and the K/V as they are, each frame hashed once.
 */
export async function writeSegment(
  deps: CacheDeps, job: Job, plan: JobPlan, chunk: number, firstFrame: number, kv: KvData, options: PutSegmentOptions = {},
): Promise<void> {
  const m = deps.model.manifest;
  await putSegment(deps.store, { modelSha: m.onnx_sha256, kvDtype: m.kv_dtype, frameShape: kvFrameShape(m, plan) }, job, chunk, firstFrame, kv, options);
}

export interface PutSegmentOptions {
  /** ETag of the damaged segment this one replaces (absent: written only where none exists). */
  replace?: string;
  /** The caller gives `kv` up (it is detached): a large one is hashed on a second thread (hash-thread.ts). */
  handOver?: boolean;
}

/**
 * Encodes and stores one segment of per-frame K/V `[frames, ...frameShape]`, for either model kind.
 * A damaged segment is replaced only if it is still the damaged one (ETag); a missing one only if still missing.
 */
export async function putSegment(
  store: ObjectStore, model: { modelSha: string; kvDtype: Manifest['kv_dtype']; frameShape: readonly [number, number, number, number, number] },
  job: Job, chunk: number, firstFrame: number, kv: KvData, options: PutSegmentOptions = {},
): Promise<void> {
  const frames = kv.length / model.frameShape.reduce((a, b) => a * b, 1);
  const meta = { modelSha: model.modelSha, job: job.id, chunk, firstFrame, shape: [frames, ...model.frameShape] as const };
  const { header, payload } = await encodeSegmentParts(kv, meta, model.kvDtype, { handOver: options.handOver });
  const condition = options.replace !== undefined ? { ifMatch: options.replace } : { ifNoneMatch: '*' as const };
  try {
    await store.put(segmentKey(job, chunk), [header, payload], { ...condition, contentType: 'application/octet-stream', tags: CACHE_SEGMENT_TAGS, durable: false });
  } catch (err) {
    // Someone else wrote (or repaired) it first: the same pass over the same inputs, the same bytes.
    if (!(err instanceof PreconditionFailedError)) throw err;
  }
}

/**
 * The window of K/V before global frame `endFrame` (at most P_max frames), in the step graph's
 * layout and dtype, read from the newest segments covering it: each segment's needed frames
 * straight into their slots; a damaged segment is rebuilt (see top).
 */
export async function readWindow(deps: CacheDeps, job: Job, plan: JobPlan, endFrame: number): Promise<AssembledWindow> {
  const m = deps.model.manifest;
  const available = await lineageSegments(deps, job, plan, endFrame);
  const readPlan = planCacheRead(available, m.p_max, { endFrame, startFrame: available[0]?.firstFrame ?? endFrame });
  const shape = attentionShape(m, plan);
  const window = allocateWindow(readPlan.frames, readPlan.firstFrame, shape, m.cache_dtype);
  const placements = readPlan.segments.map((seg, i) => {
    const from = i === 0 ? readPlan.skipFrames : 0;
    return { window, shape, from, count: seg.frames - from, g0: seg.firstFrame + from };
  });
  // Two segments at a time, each lane reading into its own reused buffer.
  const results: Damage[] = [];
  let next = 0;
  const lane = async () => {
    const staging = new Staging();
    while (next < readPlan.segments.length) {
      const i = next++;
      const seg = readPlan.segments[i];
      const damage = await readStored(deps, seg.owner, seg.ownerPlan, ownSegment(seg), { ...placements[i], staging });
      if (damage) results[i] = damage;
    }
  };
  await Promise.all([lane(), lane()]);
  // Damaged ones are rebuilt oldest first, so each rebuild's own window reads the ones before it repaired.
  for (const [i, seg] of readPlan.segments.entries()) {
    if (!results[i]) continue;
    const kv = await rebuildSegment(deps, seg.owner, seg.ownerPlan, ownSegment(seg), results[i]);
    const p = placements[i];
    placeFrames(window, kv, p.from, p.count, p.g0, shape);
  }
  return window;
}

/** A segment of this job, or of a video it continues (extend, fork), in frame order: `chunk` orders them. */
interface LineageSegment extends SegmentInfo {
  owner: Job;
  ownerPlan: JobPlan;
  /** The segment's chunk in its owner's numbering (PREFIX_CHUNK for starting frames). */
  ownerChunk: number;
}

const ownSegment = (seg: LineageSegment): SegmentInfo => ({ chunk: seg.ownerChunk, firstFrame: seg.firstFrame, frames: seg.frames });

/** Most videos a continuation may stand on (a chain of extensions). */
const MAX_LINEAGE = 1000;

/** A job whose frames a window may hold, and how many of its own frames count (`cut`: a video continued from its frame `cut`). */
export interface LineageOwner { owner: Job; ownerPlan: JobPlan; cut: number }

/**
 * The jobs whose frames can be in the window before global frame `endFrame`, newest first: the
 * job itself (its frames before endFrame), and while the window reaches before an owner's first
 * chunk (`from`, the window's first frame), the video that owner continues, up to the frame it was
 * cut at, and so on up the lineage. Format 1 and format 2 (latent-chunk.ts) read their windows so.
 */
export async function lineageOwners(
  store: ObjectStore, manifest: ServedManifest, job: Job, plan: JobPlan, endFrame: number, from: number,
): Promise<LineageOwner[]> {
  const out: LineageOwner[] = [{ owner: job, ownerPlan: plan, cut: endFrame - plan.startFrame }];
  for (;;) {
    const { owner, ownerPlan } = out[out.length - 1];
    if (!owner.parent || from >= ownerPlan.startFrame) return out;
    if (out.length > MAX_LINEAGE) throw new ChunkFailure('bad_request', `job ${job.id} continues more than ${MAX_LINEAGE} videos`);
    const parent = await readJob(store, owner.tenant, owner.parent.id);
    if (!parent) throw new ChunkFailure('parent_missing', `video ${owner.parent.id}, which job ${owner.id} continues, is gone`);
    out.push({ owner: parent.job, ownerPlan: jobPlan(parent.job, manifest), cut: owner.parent.frames });
  }
}

/**
 * The segments that can hold the frames of the window before global frame `endFrame`: the job's
 * own earlier chunks, its starting frames, and, where the window reaches before the job's first
 * frame, the frames it continues (lineageOwners). A parent's last chunk was never stored (nothing
 * came after it): it is made from the parent's clean copy on first use, like any missing segment.
 */
async function lineageSegments(deps: CacheDeps, job: Job, plan: JobPlan, endFrame: number): Promise<LineageSegment[]> {
  const from = endFrame - deps.model.manifest.p_max; // no frame before this can be in the window
  const segments: LineageSegment[] = [];
  for (const { owner, ownerPlan, cut } of await lineageOwners(deps.store, deps.model.manifest, job, plan, endFrame, from)) {
    const own: LineageSegment[] = [];
    const l = ownerPlan.chunkFrames;
    for (let j = Math.max(0, Math.floor((from - ownerPlan.startFrame) / l)); j * l < cut; j++) {
      own.push({ owner, ownerPlan, ownerChunk: j, chunk: 0, firstFrame: firstFrameOf(ownerPlan, j), frames: Math.min(l, cut - j * l) });
    }
    if (ownerPlan.initFrames > 0 && from < ownerPlan.startFrame) {
      own.unshift({ owner, ownerPlan, ownerChunk: PREFIX_CHUNK, chunk: 0, firstFrame: 0, frames: ownerPlan.initFrames });
    }
    segments.unshift(...own);
  }
  segments.forEach((seg, i) => { seg.chunk = i; });
  return segments;
}

/**
 * One frame's K/V as the window holds it: head_dim runs (depth * 2 * rows * tokens * heads of them,
 * the frame axis inside each), or, for a graph that takes its window frames first, one run.
 */
export const attentionShape = (m: Manifest, plan: JobPlan) => {
  const runs = m.depth * 2 * plan.rows * m.tokens_per_frame * m.heads;
  return framesFirstCache(m) ? { runs: 1, headDim: runs * m.head_dim } : { runs, headDim: m.head_dim };
};

interface Damage { code: 'cache_missing' | 'cache_corrupt'; reason: string; etag?: string }

/**
 * Reads segment `seg` into its place in the window if it passes every check; else says what is
 * wrong with it. A segment that fails is read once more before it counts as damaged, so a read cut
 * short in transit never gets a good segment replaced; one this worker is still writing is waited for.
 */
async function readStored(
  deps: CacheDeps, job: Job, plan: JobPlan, seg: SegmentInfo, placement: Parameters<typeof readSegmentInto>[3], retry = true,
): Promise<Damage | undefined> {
  const m = deps.model.manifest;
  const key = segmentKey(job, seg.chunk);
  await deps.segmentWrites?.settle(key);
  let got;
  try {
    got = await readSegmentInto(deps.store, key, { modelSha: m.onnx_sha256, job: job.id, chunk: seg.chunk, frameShape: kvFrameShape(m, plan), frames: seg.frames, firstFrame: seg.firstFrame }, placement);
  } catch (err) {
    if (err instanceof ModelHashMismatchError) {
      throw new ChunkFailure('model_mismatch', `cache segment ${key} was made by another model (${err.actual}); this worker serves ${err.expected}`, err);
    }
    throw err;
  }
  if (got.ok) return undefined;
  if (got.missing) {
    // The newest segment may still be on its way from the worker that made the chunk before.
    const segBytes = seg.frames * kvFrameShape(m, plan).reduce((a, b) => a * b, 1) * (m.kv_dtype === 'float16' ? 2 : 4);
    const newest = seg.firstFrame + seg.frames === placement.window.firstFrame + placement.window.frames;
    if (retry && newest && defersSegment(deps, segBytes) && await appears(deps.store, key, deps.segmentWaitMs ?? 10_000)) {
      return readStored(deps, job, plan, seg, placement, false);
    }
    return { code: 'cache_missing', reason: 'missing' };
  }
  if (retry) return readStored(deps, job, plan, seg, placement, false);
  return { code: 'cache_corrupt', reason: got.reason, etag: got.etag };
}

/** Recomputes a damaged segment from the frames it was made from, after its own window, and stores it. */
async function rebuildSegment(deps: CacheDeps, job: Job, plan: JobPlan, seg: SegmentInfo, damage: Damage): Promise<KvData> {
  const key = segmentKey(job, seg.chunk);
  const lostAll = (detail: string, cause?: unknown) => new ChunkFailure(damage.code,
    `cache segment ${key} is ${damage.reason === 'missing' ? 'missing' : `damaged (${damage.reason})`}, and the frames to rebuild it from are gone (${detail})`, { cause });
  let source: { frames: Float32Array; from: 'input' | 'clean_copy' | 'png' };
  if (seg.chunk === PREFIX_CHUNK) {
    const frameKeys = Array.from({ length: seg.frames }, (_, i) => inputFrameKey(job.tenant, job.id, i));
    const pngs = await Promise.all(frameKeys.map(async (k) => (await deps.store.get(k))?.body));
    const lost = frameKeys.filter((_, i) => !pngs[i]);
    if (lost.length > 0) throw lostAll(lost.join(', '));
    source = { frames: decodeStoredPngs(deps, pngs as Buffer[], frameKeys), from: 'input' };
  } else {
    // The chunk's lossless copy (an exact rebuild), else its 8-bit frames (clean-copy.ts).
    try {
      source = await chunkFramesForRebuild(deps, job, seg.chunk, seg.frames);
    } catch (err) {
      if (err instanceof ChunkFailure && err.code === 'frames_missing') throw lostAll(err.message, err);
      throw err;
    }
  }
  const lossy = source.from === 'png';
  // A job's last chunk has no segment until a continuation needs one: made now, not a repair.
  const firstUse = seg.chunk === plan.chunksTotal - 1 && damage.reason === 'missing';
  if (firstUse) log.info('cache segment of a last chunk made for a continuation', { job: job.id, chunk: seg.chunk });
  else log.warn(`cache segment damaged; rebuilding it from ${lossy ? 'its 8-bit frames (last resort: approximate)' : source.from === 'input' ? 'the starting frames' : 'the clean copy'}`,
    { job: job.id, chunk: seg.chunk, reason: damage.reason });
  const window = seg.chunk === PREFIX_CHUNK ? emptyWindow(deps.model.manifest.cache_dtype) : await readWindow(deps, job, plan, seg.firstFrame);
  const kv = await cacheWritePass(deps.model, job, plan, source.frames, seg.chunk, seg.firstFrame, window);
  await writeSegment(deps, job, plan, seg.chunk, seg.firstFrame, kv, { replace: damage.etag });
  if (!firstUse) await recordRepair(deps.store, job, { object: key.slice(jobPrefix(job.tenant, job.id).length), from: source.from, lossy });
  return kv;
}

/**
 * Reads every segment of the job and rebuilds the damaged or missing ones: run when the job
 * finishes, because a worker that kept its window in memory never read them back. Each segment is
 * read into a scratch window of its own size, one at a time.
 */
export async function verifySegments(deps: CacheDeps, job: Job, plan: JobPlan): Promise<void> {
  const m = deps.model.manifest;
  const shape = attentionShape(m, plan);
  const segments: SegmentInfo[] = [];
  if (plan.initFrames > 0) segments.push({ chunk: PREFIX_CHUNK, firstFrame: 0, frames: plan.initFrames });
  for (let j = 0; j + 1 < plan.chunksTotal; j++) segments.push({ chunk: j, firstFrame: firstFrameOf(plan, j), frames: plan.chunkFrames });
  for (const seg of segments) {
    const window = allocateWindow(seg.frames, seg.firstFrame, shape, m.cache_dtype);
    const damage = await readStored(deps, job, plan, seg, { window, shape, from: 0, count: seg.frames, g0: seg.firstFrame });
    if (damage) await rebuildSegment(deps, job, plan, seg, damage);
  }
}

/** Polls for `key` for up to `ms`; true once it exists. */
export async function appears(store: ObjectStore, key: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    if (await store.head(key)) return true;
  }
  return false;
}

export const segmentKey = (job: Job, chunk: number) => cacheSegmentKey(job.tenant, job.id, chunk === PREFIX_CHUNK ? 'prefix' : chunk);

function repeatRows(x: Float32Array, rows: number): Float32Array {
  if (rows === 1) return x;
  const out = new Float32Array(x.length * rows);
  for (let r = 0; r < rows; r++) out.set(x, r * x.length);
  return out;
}
