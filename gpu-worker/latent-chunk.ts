/**
 * Chunk k of a format-2 model (latent frames, VAE graphs, a temporal and a spatial prefix cache),
 * as one task of the job pipeline: what latent-generate.ts does in memory, with the caches and the
 * latents in the store. The job around it (read, cancel, advance, next task, finalize) is the
 * chunk step's (chunk-step.ts), the same for both kinds of model.
 *
 *   chunk 0: starting frames -> encoder, once (latents/prefix.f32) -> cache write -> segment "prefix"
 *   window (this worker's memo, or the newest segments) -> IDDPM over the respaced schedule, every
 *   step sharing both caches -> latents/{k}.f32 (lossless) -> cache write -> segment k
 *   -> decoder -> PNG frames, clean copy (the decoded RGB, fp16) and HLS segment
 *
 * A segment's frame holds both caches of that frame: its temporal K/V, then its spatial K/V, i.e.
 * [2 * depth, 2, rows, tokens, width] per frame, so the segment codec, its per-frame hashes and
 * write-once storage are the format-1 ones. The window of chunk k is the temporal K/V of the newest
 * P_max frames before it and the spatial K/V of the last written chunk (prefixFrameIndices picks
 * which of its frames). A missing or damaged segment is rebuilt from the stored latents by the same
 * cache-write pass, after its own window (read the same way): the same bytes. Never from decoded
 * PNGs: re-encoding them would not give the same cache. Noise is a function of (seed, chunk,
 * stream), so a redelivered task makes the same bytes.
 *
 * A continuation (extend, fork) has no starting frames: its first window is read from the video it
 * continues (and so on up the lineage), up to the frame it was cut at. The segment of a video's
 * last chunk is never written by the video itself (nothing came after it); a continuation makes it
 * from that chunk's stored latents on first use, holding just the frames it continues from.
 */
import * as os from 'node:os';
import type { AssembledWindow } from '../shared/cache/assemble.js';
import { CacheError, ModelHashMismatchError } from '../shared/cache/errors.js';
import { decodeSegmentBits, PREFIX_CHUNK, type KvData, type SegmentHeader } from '../shared/cache/segment.js';
import { CACHE_SEGMENT_TAGS, frameKey, inputFrameKey, jobPrefix, streamSegmentKey } from '../shared/keys.js';
import { encodeTsSegment, TS_SEGMENT_TYPE } from '../shared/media/hls.js';
import { framesToPngs } from '../shared/media/png.js';
import type { ManifestV2 } from '../shared/model/manifest-v2.js';
import { iddpmSchedule, iddpmStep, type IddpmSchedule } from '../shared/sampler/iddpm.js';
import { gaussianNoise } from '../shared/sampler/noise.js';
import type { Job } from '../shared/schemas/job.js';
import type { ObjectStore } from '../shared/store/object-store.js';
import { appears, defersSegment, lineageOwners, putSegment, segmentKey } from './cache-window.js';
import type { ChunkDeps, PhaseTimer } from './chunk-step.js';
import { assertEarlierFramesKept, decodeStoredPngs, f16Precision, recordRepair, writeCleanCopy } from './clean-copy.js';
import { ChunkFailure } from './errors.js';
import { firstFrameOf, framesOfChunk, geometry, type JobPlan } from './job-plan.js';
import { attentionLayout, contextLatents, prefixFrameIndices } from './latent-generate.js';
import type { LatentModelSession } from './latent-session.js';
import { log } from './log.js';
import { openChunkBlob, sealChunkBlob, type ChunkBlobMeta } from './chunk-blob.js';

export interface LatentDeps extends Omit<ChunkDeps, 'model'> {
  model: LatentModelSession;
}

/** What reading, rebuilding and verifying the caches need. */
type CacheDeps = Pick<LatentDeps, 'store' | 'model' | 'windowMemo' | 'segmentWrites' | 'deferSegmentBytes' | 'segmentWaitMs'>;

/** Batch rows of every call: a format-2 model has no guidance, so one. */
const ROWS = 1;

/**
 * The caches a chunk attends to, frames-first as segments store them, in the manifest's kv_dtype
 * (fp16 bits, or floats): `cache` holds the temporal K/V of the window's `frames` frames (oldest
 * first), then the spatial K/V of the last written chunk's `written` frames. One buffer, so the
 * window memo counts all of it; widened to floats only for the step graph's inputs.
 */
export interface LatentWindow extends AssembledWindow {
  written: number;
}

/**
 * Steps 2-5 of the chunk step for a format-2 model: window, denoise, cache write, latents, frames,
 * clean copy, HLS segment. Returns the frames the temporal window held.
 */
export async function computeLatentChunk(deps: LatentDeps, job: Job, plan: JobPlan, k: number, phases: PhaseTimer, signal?: AbortSignal): Promise<number> {
  const { store, model } = deps;
  const m = model.manifest;
  if (plan.initFrames === 0 && !job.parent) throw new ChunkFailure('bad_request', `model ${m.name} continues given frames: the job has no starting frames`);
  const sched = scheduleOf(m, job);
  const firstFrame = firstFrameOf(plan, k);

  // 2. The window: the starting frames' cache is written once, by chunk 0; then this worker's
  //    window from chunk k-1, or the newest segments, the continued video's included (a damaged
  //    one rebuilt from its latents).
  if (k === 0 && plan.initFrames > 0) await writeStart(deps, job, plan, sched);
  const window = (deps.windowMemo?.take(jobKey(job), firstFrame) as LatentWindow | undefined) ?? await readLatentWindow(deps, job, plan, firstFrame);
  await assertEarlierFramesKept(deps, job, plan, k);
  phases.mark('cache_read');

  // 3. IDDPM over the respaced schedule: x_T is stream 0 of (seed, chunk), step i's noise stream 2 + i.
  //    The whole chunk is made (and its latents kept) even when the video keeps fewer of its frames.
  const l = plan.chunkFrames;
  const per = latentFloats(m);
  const noiseChunk = plan.chunkOffset + k;
  const caches = stepCaches(m, window);
  let x = gaussianNoise(l * per, { seed: job.request.seed, chunk: noiseChunk, stream: 0 });
  for (let i = sched.timesteps.length - 1; i >= 0; i--) {
    signal?.throwIfAborted();
    const { prediction } = await model.run({
      x, t: new Float32Array(ROWS * l).fill(sched.timesteps[i]), clean: new Float32Array(ROWS * l), pos: firstFrame, ...caches, rows: ROWS, frames: l,
    }, 'prediction');
    x = iddpmStep(x, prediction!, sched, i, gaussianNoise(x.length, { seed: job.request.seed, chunk: noiseChunk, stream: 2 + i }), per);
  }
  const latents = x; // [l, C, h, w]
  phases.mark('denoise');

  // 4. The latents, losslessly, before anything made from them (a rebuild reads them); then the
  //    cache write (both caches) into segment k, and the window moves on for chunk k+1 here. A
  //    large segment is stored in the background while the job advances and the next chunk runs
  //    (a crash before it lands leaves it missing; its next reader rebuilds it from the latents).
  // 5. Meanwhile the kept frames are decoded to RGB: PNG frames, the clean copy, the HLS segment.
  await writeLatents(store, job, k, latents, l);
  const segment = k + 1 < plan.chunksTotal
    ? cacheWritePass(model, job, sched, latents, noiseChunk, firstFrame, window).then(async (kv) => {
      if (keepsWindow(deps, job)) deps.windowMemo!.put(jobKey(job), advance(m, window, kv, firstFrame, l));
      if (!defersSegment(deps, kv.byteLength)) return writeLatentSegment(deps, job, k, firstFrame, kv);
      // At most one segment waiting to be stored; nothing else holds the K/V now (the window took a copy).
      await deps.segmentWrites!.drain();
      deps.segmentWrites!.start(segmentKey(job, k), () => writeLatentSegment(deps, job, k, firstFrame, kv, { handOver: true }), { job: job.id, chunk: k });
    })
    : Promise.resolve();
  const keep = framesOfChunk(plan, k);
  const frames = f16Precision(await model.decode(latents.subarray(0, keep * per), keep)); // [keep, 3, H, W]
  const g = geometry(m);
  const stream = encodeTsSegment(frames, g, { startFrame: k * l, signal })
    .then((ts) => store.put(streamSegmentKey(job.tenant, job.id, k), ts, { contentType: TS_SEGMENT_TYPE }));
  const pngs = framesToPngs(frames, g);
  await Promise.all([
    segment, stream, writeCleanCopy(store, job, k, frames, keep),
    ...pngs.map((png, i) => store.put(frameKey(job.tenant, job.id, k, i), png, { contentType: 'image/png' })),
  ]);
  phases.mark('write');
  return window.frames;
}

/**
 * Reads every segment of the job and rebuilds the damaged or missing ones (run when the job
 * finishes: a worker that kept its window in memory never read them back).
 */
export async function verifyLatentSegments(deps: CacheDeps, job: Job, plan: JobPlan): Promise<void> {
  const segments = ownSegments(job, plan, plan.chunksTotal - 1, Infinity);
  for (const [i, seg] of segments.entries()) await readOrRebuild(deps, seg, i === segments.length - 1);
}

/** The window memo's default budget for a latent model: a quarter of the machine's memory, less two windows being built. */
export function latentWindowBudget(m: ManifestV2, memory = os.totalmem()): number {
  return Math.max(0, Math.floor(memory / 4 - 2 * latentWindowBytes(m)));
}

/** Bytes of the largest window the worker keeps: P_max frames of temporal K/V and the spatial K/V of a chunk or of up to P_max starting frames, in the manifest's kv_dtype. */
export function latentWindowBytes(m: ManifestV2): number {
  return (m.p_max + Math.max(m.p_max, m.chunk_frames)) * kvFrameFloats(m) * kvValueBytes(m);
}

// ---- the starting frames ----

/** Chunk 0: the starting frames' latents (encoded once, stored) and their cache write (segment "prefix"). */
async function writeStart(deps: CacheDeps, job: Job, plan: JobPlan, sched: IddpmSchedule): Promise<void> {
  if (await deps.store.head(segmentKey(job, PREFIX_CHUNK))) return;
  const { latents } = await startingLatents(deps, job, plan);
  const kv = await cacheWritePass(deps.model, job, sched, latents, PREFIX_CHUNK, 0, emptyLatentWindow(deps.model.manifest));
  await writeLatentSegment(deps, job, PREFIX_CHUNK, 0, kv);
  if (keepsWindow(deps, job)) deps.windowMemo!.put(jobKey(job), advance(deps.model.manifest, emptyLatentWindow(deps.model.manifest), kv, 0, plan.initFrames));
}

/** The starting frames' latents: stored ones, else the starting frames encoded now (and stored). */
async function startingLatents(deps: CacheDeps, job: Job, plan: JobPlan): Promise<{ latents: Float32Array; from: 'latents' | 'input' }> {
  const stored = await readLatents(deps.store, job, PREFIX_CHUNK, plan.initFrames, latentFloats(deps.model.manifest));
  if (stored) return { latents: stored, from: 'latents' };
  const keys = Array.from({ length: plan.initFrames }, (_, i) => inputFrameKey(job.tenant, job.id, i));
  const pngs = await Promise.all(keys.map(async (key, i) => {
    const obj = await deps.store.get(key);
    if (!obj) throw new ChunkFailure('input_missing', `starting frame ${i} is missing from the store`);
    return obj.body;
  }));
  const latents = await deps.model.encode(decodeStoredPngs(deps, pngs, keys), plan.initFrames);
  await writeLatents(deps.store, job, PREFIX_CHUNK, latents, plan.initFrames);
  return { latents, from: 'input' };
}

// ---- the caches ----

/** Both caches of `n` frames, frames-first: per frame, its temporal K/V then its spatial K/V. */
type FrameKv = KvData; // [n, caches * depth, 2, rows, tokens, width], in the manifest's kv_dtype

/** How many caches a segment frame holds: 2 with a spatial prefix cache, else 1. */
const cacheCount = (m: ManifestV2) => (m.prefix_cache ? 2 : 1);
/** Floats of one frame of one cache: depth * 2 * rows * tokens * width. */
const kvFrameFloats = (m: ManifestV2) => m.depth * 2 * ROWS * m.tokens_per_frame * m.width;
/** Bytes of one K/V value as the graph emits it (kv_dtype). */
const kvValueBytes = (m: ManifestV2) => (m.kv_dtype === 'float16' ? 2 : 4);
const latentFloats = (m: ManifestV2) => m.latent.channels * m.latent.height * m.latent.width;

/**
 * The cache-write pass of latents `z` (frames from `firstFrame`) after `window`: both caches of
 * each frame, of the latents noised at context_t (noise keyed by `noiseChunk`), embedded at context_embed_t.
 */
async function cacheWritePass(
  model: LatentModelSession, job: Job, sched: IddpmSchedule, z: Float32Array, noiseChunk: number, firstFrame: number, window: LatentWindow,
): Promise<FrameKv> {
  const m = model.manifest;
  const n = z.length / latentFloats(m);
  const { kv, kvPrefix } = await model.writeKv({
    x: contextLatents(m, sched, z, job.request.seed, noiseChunk), t: new Float32Array(ROWS * n).fill(m.context_embed_t), clean: new Float32Array(ROWS * n).fill(1),
    pos: firstFrame, ...stepCaches(m, window), rows: ROWS, frames: n,
  });
  if (!m.prefix_cache) return kv;
  const f = kvFrameFloats(m);
  const out = sameKind(kv, 2 * n * f);
  for (let i = 0; i < n; i++) {
    out.set(kv.subarray(i * f, (i + 1) * f), 2 * i * f);
    out.set(kvPrefix!.subarray(i * f, (i + 1) * f), (2 * i + 1) * f);
  }
  return out;
}

/** A zeroed array of `n` values of the same kind as `like` (fp16 bits or floats). */
const sameKind = (like: KvData, n: number): KvData => (like instanceof Uint16Array ? new Uint16Array(n) : new Float32Array(n));

/** The step graph's cache inputs for `window`: the temporal cache and the prefix frames the official rule picks. */
function stepCaches(m: ManifestV2, window: LatentWindow): { cache: Float32Array; cacheFrames: number; prefix?: Float32Array } {
  const f = kvFrameFloats(m);
  const frame = (i: number) => window.cache.subarray(i * f, (i + 1) * f);
  const temporal = Array.from({ length: window.frames }, (_, i) => frame(i));
  const T = m.prefix_cache?.frames;
  const prefix = T && window.written > 0
    ? attentionLayout(m, prefixFrameIndices(window.written, T).map((i) => frame(window.frames + i)), ROWS)
    : undefined;
  return { cache: attentionLayout(m, temporal, ROWS), cacheFrames: window.frames, prefix };
}

const emptyLatentWindow = (m: ManifestV2): LatentWindow => ({ cache: m.kv_dtype === 'float16' ? new Uint16Array(0) : new Float32Array(0), frames: 0, firstFrame: 0, written: 0 });

/** `window` once the `n` frames from `firstFrame` with caches `kv` are written: the newest P_max temporal frames, their spatial K/V. */
function advance(m: ManifestV2, window: LatentWindow, kv: FrameKv, firstFrame: number, n: number): LatentWindow {
  if (firstFrame !== window.firstFrame + window.frames) throw new RangeError(`frames from ${firstFrame} do not follow a window ending at ${window.firstFrame + window.frames}`);
  const f = kvFrameFloats(m);
  const c = cacheCount(m);
  const keep = Math.min(window.frames, m.p_max - Math.min(n, m.p_max)); // old frames still in the window
  const fresh = Math.min(n, m.p_max);
  const written = m.prefix_cache ? n : 0;
  if ((kv instanceof Uint16Array) !== (window.cache instanceof Uint16Array)) throw new TypeError('the K/V and the window differ in dtype');
  const cache = sameKind(kv, (keep + fresh + written) * f);
  cache.set(window.cache.subarray((window.frames - keep) * f, window.frames * f), 0);
  for (let i = 0; i < fresh; i++) {
    const src = (n - fresh + i) * c * f;
    cache.set(kv.subarray(src, src + f), (keep + i) * f);
  }
  for (let i = 0; i < written; i++) cache.set(kv.subarray((i * c + 1) * f, (i * c + 2) * f), (keep + fresh + i) * f);
  return { cache, frames: keep + fresh, firstFrame: firstFrame + n - keep - fresh, written };
}

// ---- segments ----

/** A segment of the job, or of a video it continues: `chunk` in its owner's numbering. */
interface LatentSegment { owner: Job; ownerPlan: JobPlan; chunk: number; firstFrame: number; frames: number }

/**
 * The segments of `job`'s starting frames (if any) and of its first `cut` frames' chunks (a chunk
 * cut short holds only the frames before `cut`), up to `chunks` chunks, oldest first.
 */
function ownSegments(job: Job, plan: JobPlan, chunks: number, cut: number): LatentSegment[] {
  const out: LatentSegment[] = [];
  if (plan.initFrames > 0) out.push({ owner: job, ownerPlan: plan, chunk: PREFIX_CHUNK, firstFrame: 0, frames: plan.initFrames });
  for (let j = 0; j < chunks && j * plan.chunkFrames < cut; j++) {
    out.push({ owner: job, ownerPlan: plan, chunk: j, firstFrame: firstFrameOf(plan, j), frames: Math.min(plan.chunkFrames, cut - j * plan.chunkFrames) });
  }
  return out;
}

/**
 * The segments that hold the window before global frame `endFrame`, oldest first: the job's own,
 * and where the window reaches before its first frame, those of the video it continues, up to the
 * frame it was cut at (and so on up the lineage).
 */
async function windowSegments(deps: CacheDeps, job: Job, plan: JobPlan, endFrame: number): Promise<LatentSegment[]> {
  const from = Math.max(0, endFrame - deps.model.manifest.p_max);
  const owners = await lineageOwners(deps.store, deps.model.manifest, job, plan, endFrame, from);
  return owners.reverse().flatMap(({ owner, ownerPlan, cut }) => ownSegments(owner, ownerPlan, Infinity, cut).filter((s) => s.firstFrame + s.frames > from));
}

/**
 * The window before global frame `endFrame`, from the segments that hold it: the temporal K/V of
 * its newest P_max frames and the spatial K/V of the segment that ends at `endFrame`.
 */
async function readLatentWindow(deps: CacheDeps, job: Job, plan: JobPlan, endFrame: number): Promise<LatentWindow> {
  const m = deps.model.manifest;
  let window = emptyLatentWindow(m);
  const segments = await windowSegments(deps, job, plan, endFrame);
  for (const [i, seg] of segments.entries()) {
    const kv = await readOrRebuild(deps, seg, i === segments.length - 1);
    // Frames before the window never reach it: start it where this segment starts, then trim.
    if (window.frames === 0) window = { ...window, firstFrame: seg.firstFrame };
    window = advance(m, window, kv, seg.firstFrame, seg.frames);
  }
  if (window.firstFrame + window.frames !== endFrame) throw new RangeError(`the window ends at ${window.firstFrame + window.frames}, not ${endFrame}`);
  return window;
}

interface Damage { code: 'cache_missing' | 'cache_corrupt'; reason: string; etag?: string }

/**
 * Segment `seg`'s caches: read and checked (twice before it counts as damaged), else rebuilt from
 * its latents and stored. One this worker is still storing is waited for; the `newest` one of a
 * window, when such segments are stored in the background, is waited for a while (segmentWaitMs)
 * in case another worker is still storing it.
 */
async function readOrRebuild(deps: CacheDeps, seg: LatentSegment, newest = false): Promise<FrameKv> {
  const key = segmentKey(seg.owner, seg.chunk);
  await deps.segmentWrites?.settle(key);
  let got = await readLatentSegment(deps, seg);
  if ('code' in got && got.code === 'cache_corrupt') got = await readLatentSegment(deps, seg);
  if ('code' in got && got.code === 'cache_missing' && newest && defersSegment(deps, segmentBytes(deps.model.manifest, seg.frames))
    && await appears(deps.store, key, deps.segmentWaitMs ?? 10_000)) {
    got = await readLatentSegment(deps, seg);
  }
  if (!('code' in got)) return got;
  return rebuild(deps, seg, got);
}

async function readLatentSegment(deps: CacheDeps, seg: LatentSegment): Promise<FrameKv | Damage> {
  const m = deps.model.manifest;
  const job = seg.owner;
  const key = segmentKey(job, seg.chunk);
  const obj = await deps.store.get(key);
  if (!obj) return { code: 'cache_missing', reason: 'missing' };
  let meta: SegmentHeader;
  let data: KvData;
  try {
    ({ meta, data } = decodeSegmentBits(obj.body, { modelSha: m.onnx_sha256, job: job.id, chunk: seg.chunk, frameShape: segmentFrameShape(m) }));
  } catch (err) {
    if (err instanceof ModelHashMismatchError) {
      throw new ChunkFailure('model_mismatch', `cache segment ${key} was made by another model (${err.actual}); this worker serves ${err.expected}`, err);
    }
    if (err instanceof CacheError) return { code: 'cache_corrupt', reason: err.message, etag: obj.etag };
    throw err;
  }
  if (meta.dtype !== m.kv_dtype) return { code: 'cache_corrupt', reason: `stored as ${meta.dtype}, not ${m.kv_dtype}`, etag: obj.etag };
  if (meta.shape[0] !== seg.frames || meta.firstFrame !== seg.firstFrame) {
    return { code: 'cache_corrupt', reason: `holds ${meta.shape[0]} frames from frame ${meta.firstFrame}, not ${seg.frames} from ${seg.firstFrame}`, etag: obj.etag };
  }
  return data;
}

/**
 * Recomputes a damaged segment from the latents it was made from, after its own window, and stores
 * it. A video's last chunk has no segment until a continuation needs one: made now, not a repair.
 */
async function rebuild(deps: CacheDeps, seg: LatentSegment, damage: Damage): Promise<FrameKv> {
  const { owner: job, ownerPlan: plan } = seg;
  const key = segmentKey(job, seg.chunk);
  const per = latentFloats(deps.model.manifest);
  let source: { latents: Float32Array; from: 'latents' | 'input' };
  if (seg.chunk === PREFIX_CHUNK) source = await startingLatents(deps, job, plan);
  else {
    // A chunk's latents are stored whole; a segment cut short holds its first frames.
    const stored = await readLatents(deps.store, job, seg.chunk, plan.chunkFrames, per);
    if (!stored) {
      throw new ChunkFailure(damage.code, `cache segment ${key} is ${damage.reason === 'missing' ? 'missing' : `damaged (${damage.reason})`}, and the latents of chunk ${seg.chunk} to rebuild it from are gone or damaged`);
    }
    source = { latents: stored.subarray(0, seg.frames * per), from: 'latents' };
  }
  const firstUse = seg.chunk === plan.chunksTotal - 1 && damage.reason === 'missing';
  if (firstUse) log.info('cache segment of a last chunk made for a continuation', { job: job.id, chunk: seg.chunk });
  else log.warn(`cache segment damaged; rebuilding it from ${source.from === 'input' ? 'the starting frames' : 'its latents'}`, { job: job.id, chunk: seg.chunk, reason: damage.reason });
  const window = seg.chunk === PREFIX_CHUNK ? emptyLatentWindow(deps.model.manifest) : await readLatentWindow(deps, job, plan, seg.firstFrame);
  const noiseChunk = seg.chunk === PREFIX_CHUNK ? PREFIX_CHUNK : plan.chunkOffset + seg.chunk;
  const kv = await cacheWritePass(deps.model, job, scheduleOf(deps.model.manifest, job), source.latents, noiseChunk, seg.firstFrame, window);
  await writeLatentSegment(deps, job, seg.chunk, seg.firstFrame, kv, { replace: damage.etag });
  if (!firstUse) await recordRepair(deps.store, job, { object: key.slice(jobPrefix(job.tenant, job.id).length), from: source.from, lossy: false });
  return kv;
}

/** One frame of a segment: [caches * depth, 2, rows, tokens, width]. */
const segmentFrameShape = (m: ManifestV2) => [cacheCount(m) * m.depth, 2, ROWS, m.tokens_per_frame, m.width] as const;

/** Bytes of `frames` frames of a segment's K/V, in the manifest's kv_dtype. */
const segmentBytes = (m: ManifestV2, frames: number) => frames * cacheCount(m) * kvFrameFloats(m) * kvValueBytes(m);

/** Stores segment `chunk` once (write-once; a damaged one is replaced only while it is still the damaged one). */
async function writeLatentSegment(deps: CacheDeps, job: Job, chunk: number, firstFrame: number, kv: FrameKv, options: { replace?: string; handOver?: boolean } = {}): Promise<void> {
  const m = deps.model.manifest;
  await putSegment(deps.store, { modelSha: m.onnx_sha256, kvDtype: m.kv_dtype, frameShape: segmentFrameShape(m) }, job, chunk, firstFrame, kv, options);
}

// ---- latents ----

const LATENTS_MAGIC = 'CA2VDML1';

/** `jobs/{tenant}/{job}/latents/{k:06}.f32`, or `latents/prefix.f32` for the starting frames. */
export function latentsKey(job: Pick<Job, 'tenant' | 'id'>, chunk: number): string {
  if (chunk !== PREFIX_CHUNK && (!Number.isInteger(chunk) || chunk < 0 || chunk > 999_999)) throw new RangeError(`chunk ${chunk} out of range`);
  return `${jobPrefix(job.tenant, job.id)}latents/${chunk === PREFIX_CHUNK ? 'prefix' : String(chunk).padStart(6, '0')}.f32`;
}

/** The latents' bytes: a chunk blob (chunk-blob.ts) with a float32 payload (little-endian). */
export function encodeLatents(latents: Float32Array, meta: ChunkBlobMeta): Buffer {
  const payload = Buffer.alloc(latents.length * 4);
  latents.forEach((v, i) => payload.writeFloatLE(v, i * 4));
  return sealChunkBlob(LATENTS_MAGIC, { ...meta, floats: latents.length }, payload);
}

/** The latents if `bytes` are intact and the ones expected; else null. */
export function decodeLatents(bytes: Buffer, expect: ChunkBlobMeta & { floats: number }): Float32Array | null {
  const payload = openChunkBlob(bytes, LATENTS_MAGIC, expect, expect.floats * 4);
  return payload && Float32Array.from({ length: expect.floats }, (_, i) => payload.readFloatLE(i * 4));
}

/** Stores chunk k's latents (the same bytes on every attempt; they expire with the cache segments). */
async function writeLatents(store: ObjectStore, job: Job, chunk: number, latents: Float32Array, frames: number): Promise<void> {
  await store.put(latentsKey(job, chunk), encodeLatents(latents, { job: job.id, chunk, frames }), { contentType: 'application/octet-stream', tags: CACHE_SEGMENT_TAGS });
}

async function readLatents(store: ObjectStore, job: Job, chunk: number, frames: number, perFrame: number): Promise<Float32Array | null> {
  const obj = await store.get(latentsKey(job, chunk));
  if (!obj) return null;
  const latents = decodeLatents(obj.body, { job: job.id, chunk, frames, floats: frames * perFrame });
  if (!latents) log.warn('stored latents damaged', { job: job.id, chunk });
  return latents;
}

/** The job's respaced schedule (a continuation keeps its video's steps). */
const scheduleOf = (m: ManifestV2, job: Job): IddpmSchedule => iddpmSchedule(m.schedule.alphas_cumprod, job.request.steps);

// ---- the window memo ----

function keepsWindow(deps: CacheDeps, job: Job): boolean {
  return deps.windowMemo?.keeps(latentWindowBytes(deps.model.manifest), { job: job.id, model: deps.model.manifest.name }) ?? false;
}

const jobKey = (job: Job) => `${job.tenant}/${job.id}`;
