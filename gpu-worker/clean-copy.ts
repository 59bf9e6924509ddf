/**
 * The lossless copy of each chunk's clean model output, `clean/{k:06}.f16` beside the frames, and
 * the rebuilds made from it.
 *
 * The chunk step rounds its clean output to fp16 once, and everything after uses those floats: the
 * cache-write pass, the PNG frames and this copy. So a damaged cache segment rebuilt from the copy
 * has the K/V of an undamaged run, and a damaged or missing frame PNG re-encoded from it is the same
 * file: a repaired job is identical to an undamaged one. Only when the copy is gone too is a
 * segment rebuilt from the 8-bit PNG frames, which is approximate; the job records every repair and
 * whether it was lossy. A frame that neither can give back fails the job at once.
 */
import { f16ToF32, f32ToF16 } from '../shared/cache/f16.js';
import { updateJob } from '../shared/jobs/job-store.js';
import { CACHE_SEGMENT_TAGS, frameKey, framesPrefix, jobPrefix } from '../shared/keys.js';
import { FrameSizeError, PngDecodeError } from '../shared/media/errors.js';
import { framesToPngs, pngToFrame } from '../shared/media/png.js';
import { frameFloats, type Manifest } from '../shared/model/manifest.js';
import { countCacheRebuild } from '../shared/observability/metrics.js';
import type { Job, JobRepair } from '../shared/schemas/job.js';
import { PreconditionFailedError } from '../shared/store/errors.js';
import type { ObjectStore } from '../shared/store/object-store.js';
import { ChunkFailure } from './errors.js';
import { geometry, type JobPlan } from './job-plan.js';
import { log } from './log.js';
import { openChunkBlob, sealChunkBlob, type ChunkBlobMeta } from './chunk-blob.js';

export interface CleanCopyDeps {
  store: ObjectStore;
  /** Only the frame geometry: the RGB (or grey) frames a chunk shows, whatever space the model works in. */
  model: { manifest: Pick<Manifest, 'frame'> };
}

const MAGIC = 'CA2VDMF1';

/** `jobs/{tenant}/{job}/clean/{k:06}.f16`. */
export function cleanCopyKey(job: Pick<Job, 'tenant' | 'id'>, chunk: number): string {
  if (!Number.isInteger(chunk) || chunk < 0 || chunk > 999_999) throw new RangeError(`chunk ${chunk} out of range`);
  return `${jobPrefix(job.tenant, job.id)}clean/${String(chunk).padStart(6, '0')}.f16`;
}

/** `x` rounded to fp16 precision: the floats the copy holds, used for everything after the denoise. */
export function f16Precision(x: Float32Array): Float32Array {
  return f16ToF32(f32ToF16(x));
}

/** The copy's bytes: a chunk blob (chunk-blob.ts) with an fp16 payload. */
export function encodeCleanCopy(frames: Float32Array, meta: ChunkBlobMeta): Buffer {
  const f16 = f32ToF16(frames);
  return sealChunkBlob(MAGIC, { ...meta, floats: frames.length }, Buffer.from(f16.buffer, f16.byteOffset, f16.byteLength));
}

/** The frames of a copy if it is intact and is the one expected; else null (damaged or another chunk's). */
export function decodeCleanCopy(bytes: Buffer, expect: ChunkBlobMeta & { floats: number }): Float32Array | null {
  const payload = openChunkBlob(bytes, MAGIC, expect, expect.floats * 2);
  if (!payload) return null;
  const f16 = new Uint16Array(expect.floats);
  Buffer.from(f16.buffer).set(payload);
  return f16ToF32(f16);
}

/** Stores chunk k's copy (the same bytes on every attempt; expires with the cache segments). */
export async function writeCleanCopy(store: ObjectStore, job: Job, chunk: number, frames: Float32Array, count: number): Promise<void> {
  await store.put(cleanCopyKey(job, chunk), encodeCleanCopy(frames, { job: job.id, chunk, frames: count }), {
    contentType: 'application/octet-stream', tags: CACHE_SEGMENT_TAGS,
  });
}

/** Chunk k's copy, if stored and intact. */
export async function readCleanCopy(deps: CleanCopyDeps, job: Job, chunk: number, count: number): Promise<Float32Array | null> {
  const obj = await deps.store.get(cleanCopyKey(job, chunk));
  if (!obj) return null;
  const frames = decodeCleanCopy(obj.body, { job: job.id, chunk, frames: count, floats: count * frameFloats(deps.model.manifest) });
  if (!frames) log.warn('clean copy damaged', { job: job.id, chunk });
  return frames;
}

/**
 * The `count` frames of chunk k as the cache-write pass needs them: from the copy, else (last
 * resort, approximate) decoded from the PNG frames. Frames that are gone or unreadable fail the job.
 */
export async function chunkFramesForRebuild(deps: CleanCopyDeps, job: Job, chunk: number, count: number): Promise<{ frames: Float32Array; from: Extract<JobRepair['from'], 'clean_copy' | 'png'> }> {
  const copy = await readCleanCopy(deps, job, chunk, count);
  if (copy) return { frames: copy, from: 'clean_copy' };
  const per = frameFloats(deps.model.manifest);
  const out = new Float32Array(count * per);
  for (let i = 0; i < count; i++) {
    const key = frameKey(job.tenant, job.id, chunk, i);
    const obj = await deps.store.get(key);
    if (!obj) throw new ChunkFailure('frames_missing', `frame ${key} and the clean copy of chunk ${chunk} are gone`);
    out.set(decodeStoredPng(deps, obj.body, key), i * per);
  }
  return { frames: out, from: 'png' };
}

/**
 * The PNG frames of chunk k for the video: each stored one that decodes; a missing or damaged one
 * re-encoded from the copy (the same file) and stored back. Neither: the job fails at once.
 */
export async function chunkPngs(deps: CleanCopyDeps, job: Job, chunk: number, count: number): Promise<Buffer[]> {
  const g = geometry(deps.model.manifest);
  const pngs: Buffer[] = [];
  let copy: Float32Array | null | undefined;
  for (let i = 0; i < count; i++) {
    const key = frameKey(job.tenant, job.id, chunk, i);
    const obj = await deps.store.get(key);
    let damage = obj ? undefined : 'missing';
    if (obj) {
      try { pngToFrame(obj.body, g); } catch (err) {
        if (!(err instanceof PngDecodeError || err instanceof FrameSizeError)) throw err;
        damage = `damaged (${err.message})`;
      }
    }
    if (!damage) { pngs.push(obj!.body); continue; }
    copy ??= await readCleanCopy(deps, job, chunk, count);
    if (!copy) {
      throw new ChunkFailure(obj ? 'frames_corrupt' : 'frames_missing', `frame ${key} is ${damage}, and the clean copy of chunk ${chunk} to rebuild it from is gone or damaged`);
    }
    const [png] = framesToPngs(copy.subarray(i * frameFloats(deps.model.manifest), (i + 1) * frameFloats(deps.model.manifest)), g);
    // Replaces only the damaged object (or fills only the gap); a concurrent repair wrote the same bytes.
    try {
      await deps.store.put(key, png, { contentType: 'image/png', ...(obj ? { ifMatch: obj.etag } : { ifNoneMatch: '*' as const }) });
    } catch (err) {
      if (!(err instanceof PreconditionFailedError)) throw err;
    }
    await recordRepair(deps.store, job, { object: key.slice(jobPrefix(job.tenant, job.id).length), from: 'clean_copy', lossy: false });
    log.warn('frame rebuilt from the clean copy', { job: job.id, chunk, frame: i, damage });
    pngs.push(png);
  }
  return pngs;
}

/** A stored PNG frame as floats; an unreadable one fails the job (a damaged object is permanent). */
export function decodeStoredPng(deps: Pick<CleanCopyDeps, 'model'>, png: Buffer, key: string): Float32Array {
  try {
    return pngToFrame(png, geometry(deps.model.manifest));
  } catch (err) {
    if (err instanceof PngDecodeError || err instanceof FrameSizeError) {
      throw new ChunkFailure('frames_corrupt', `frame ${key} is damaged (${err.message}) and cannot be rebuilt`, { cause: err });
    }
    throw err;
  }
}

/** Several stored PNG frames as one [F, C, H, W] array; an unreadable one fails the job. */
export function decodeStoredPngs(deps: Pick<CleanCopyDeps, 'model'>, pngs: Buffer[], keys: string[]): Float32Array {
  const per = frameFloats(deps.model.manifest);
  const out = new Float32Array(pngs.length * per);
  pngs.forEach((png, i) => out.set(decodeStoredPng(deps, png, keys[i]), i * per));
  return out;
}

/** Notes a repair in the job (shown by GET as `repairs`); at most 100 are kept. */
export async function recordRepair(store: ObjectStore, job: Job, repair: Omit<JobRepair, 'at'>): Promise<void> {
  await updateJob(store, job.tenant, job.id, (j) => {
    const repairs = j.repairs ?? [];
    if (repairs.length >= 100) return null;
    j.repairs = [...repairs, { ...repair, at: new Date().toISOString() }];
    return j;
  });
  countCacheRebuild();
}

/**
 * Every frame of chunks 0..k-1 is stored, or can be rebuilt from its chunk's copy; else the job
 * fails now (`frames_missing`). Two listings, whatever k is.
 */
export async function assertEarlierFramesKept(deps: Pick<CleanCopyDeps, 'store'>, job: Job, plan: JobPlan, k: number): Promise<void> {
  if (k === 0) return;
  const [frames, copies] = await Promise.all([
    deps.store.list(framesPrefix(job.tenant, job.id)),
    deps.store.list(`${jobPrefix(job.tenant, job.id)}clean/`),
  ]);
  const have = new Set([...frames, ...copies]);
  for (let j = 0; j < k; j++) {
    if (have.has(cleanCopyKey(job, j))) continue;
    for (let i = 0; i < plan.chunkFrames; i++) {
      const key = frameKey(job.tenant, job.id, j, i);
      if (!have.has(key)) throw new ChunkFailure('frames_missing', `frame ${key} is missing, and so is the clean copy of chunk ${j} it could be rebuilt from`);
    }
  }
}
