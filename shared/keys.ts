import { SAFE_ID_PATTERN } from './schemas/ids.js';

/**
 * Object-store keys of the storage layout in docs/design.md. Every function validates the ids, so a
 * tenant or job id can never add a path segment or climb out of its folder.
 */

/** Largest chunk index a 6-digit key can hold while keeping lexicographic order = numeric order. */
export const MAX_CHUNK_INDEX = 999_999;
/** Starting frames use 3 digits (`input/000.png`). */
export const MAX_INPUT_FRAMES = 1000;

export class InvalidIdError extends Error {
  override name = 'InvalidIdError';
  constructor(
    readonly field: 'tenant' | 'job',
    readonly value: string,
  ) {
    super(`invalid ${field} id ${JSON.stringify(value)}: expected 1-64 of [A-Za-z0-9_-], starting alphanumeric`);
  }
}

export function isSafeId(value: string): boolean {
  return SAFE_ID_PATTERN.test(value);
}

/** `jobs/{tenant}/`: list this to page through a tenant's jobs. */
export function tenantPrefix(tenant: string): string {
  if (!isSafeId(tenant)) throw new InvalidIdError('tenant', tenant);
  return `jobs/${tenant}/`;
}

/** `jobs/{tenant}/{job}/`: everything a job owns lives below this. */
export function jobPrefix(tenant: string, job: string): string {
  if (!isSafeId(job)) throw new InvalidIdError('job', job);
  return `${tenantPrefix(tenant)}${job}/`;
}

export function jobKey(tenant: string, job: string): string {
  return `${jobPrefix(tenant, job)}job.json`;
}

/** `input/000.png`: the i-th starting frame. */
export function inputFrameKey(tenant: string, job: string, index: number): string {
  return `${jobPrefix(tenant, job)}input/${pad(index, 3, MAX_INPUT_FRAMES - 1)}.png`;
}

export function cachePrefix(tenant: string, job: string): string {
  return `${jobPrefix(tenant, job)}cache/`;
}

/** `cache/{k:06}.kv` for chunk k, or `cache/prefix.kv` for the starting frames' segment. */
export function cacheSegmentKey(tenant: string, job: string, chunk: number | 'prefix'): string {
  const name = chunk === 'prefix' ? 'prefix' : pad(chunk, 6, MAX_CHUNK_INDEX);
  return `${cachePrefix(tenant, job)}${name}.kv`;
}

export function framesPrefix(tenant: string, job: string): string {
  return `${jobPrefix(tenant, job)}frames/`;
}

/** `frames/{k:06}.{ext}`: all frames of chunk k in one object (e.g. a vertical PNG strip). */
export function chunkFramesKey(tenant: string, job: string, chunk: number, ext = 'png'): string {
  return `${framesPrefix(tenant, job)}${pad(chunk, 6, MAX_CHUNK_INDEX)}.${safeExt(ext)}`;
}

/** `frames/{k:06}-{i:03}.{ext}`: frame i of chunk k, for workers that store one file per frame. */
export function frameKey(tenant: string, job: string, chunk: number, index: number, ext = 'png'): string {
  return `${framesPrefix(tenant, job)}${pad(chunk, 6, MAX_CHUNK_INDEX)}-${pad(index, 3, 999)}.${safeExt(ext)}`;
}

export function streamPrefix(tenant: string, job: string): string {
  return `${jobPrefix(tenant, job)}stream/`;
}

/** `stream/{k:06}.ts`: chunk k as one HLS media segment (MPEG-TS), for playback while the job runs. */
export function streamSegmentKey(tenant: string, job: string, chunk: number): string {
  return `${streamPrefix(tenant, job)}${pad(chunk, 6, MAX_CHUNK_INDEX)}.ts`;
}

export function videoKey(tenant: string, job: string): string {
  return `${jobPrefix(tenant, job)}output/video.mp4`;
}

/** `output/full.mp4`: a continuation's whole video (the frames it continues, then its own). */
export function fullVideoKey(tenant: string, job: string): string {
  return `${jobPrefix(tenant, job)}output/full.mp4`;
}

export function previewGifKey(tenant: string, job: string): string {
  return `${jobPrefix(tenant, job)}output/preview.gif`;
}

/** Prefix of the active-job markers the stalled-job reaper lists (shared/jobs/reaper.ts). */
export const ACTIVE_PREFIX = 'active/';

/** `active/{tenant}/{job}`: an empty object that lives while the job may still need a task. */
export function activeJobKey(tenant: string, job: string): string {
  if (!isSafeId(tenant)) throw new InvalidIdError('tenant', tenant);
  if (!isSafeId(job)) throw new InvalidIdError('job', job);
  return `${ACTIVE_PREFIX}${tenant}/${job}`;
}

function pad(n: number, width: number, max: number): string {
  if (!Number.isInteger(n) || n < 0 || n > max) throw new RangeError(`index ${n} is not an integer in [0, ${max}]`);
  return String(n).padStart(width, '0');
}

function safeExt(ext: string): string {
  if (!/^[a-z0-9]{1,8}$/.test(ext)) throw new RangeError(`bad file extension ${JSON.stringify(ext)}`);
  return ext;
}

/** Tags of every cache segment: the bucket's lifecycle rule expires objects carrying them. */
export const CACHE_SEGMENT_TAGS = { 'ca2vdm-cache': 'expire' } as const;
