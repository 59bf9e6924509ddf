/**
 * Segments to and from the store at any size: a read streams only the frames a window needs
 * straight into the window's slots, verifying each frame as it lands; a write stores the header and
 * the K/V as they are (no copy), hashed once; SegmentWrites lets a write finish while the next chunk
 * already runs.
 */
import { placeFrames, type AssembledWindow, type AttentionShape } from '../shared/cache/assemble.js';
import { CacheError, ChecksumMismatchError, SegmentMalformedError, SegmentMismatchError, SegmentTruncatedError } from '../shared/cache/errors.js';
import {
  checkSegmentIdentity,
  decodeSegmentHeader,
  sha256Async,
  verifySegmentFrame,
  verifySegmentFrameSync,
  type KvData,
  type SegmentExpectation,
  type SegmentHeader,
} from '../shared/cache/segment.js';
import type { ObjectStore } from '../shared/store/object-store.js';
import { log } from './log.js';

/** Bytes read first: the whole header of any segment up to 90 frames (a longer one is read again). */
const HEADER_PROBE = 4096;
/** Frames of one segment being read (and hashed) at once. */
const FRAME_LANES = 3;

/** Where a segment's frames go: frames [from, from + count) of it into `window`, the first at global frame g0. */
export interface FramePlacement {
  window: AssembledWindow;
  shape: AttentionShape;
  from: number;
  count: number;
  g0: number;
  /** Bytes to read frames into before they are placed, reused from segment to segment (fresh ones cost page faults). */
  staging?: Staging;
}

/** One reusable read buffer: at most FRAMES_PER_BATCH frames of a segment at a time. */
export class Staging {
  private buffer = new Uint8Array(0);

  take(bytes: number): Uint8Array {
    if (this.buffer.byteLength < bytes) this.buffer = new Uint8Array(bytes);
    return this.buffer.subarray(0, bytes);
  }
}

/** Frames read, verified and placed together: enough for placement to write runs of several slots. */
const FRAMES_PER_BATCH = 4;

/** The segment's place in the job: checked against its header before any payload is read. */
export interface SegmentPlace extends SegmentExpectation {
  frames: number;
  firstFrame: number;
}

export type ReadResult = { ok: true; bytes: number } | { ok: false; missing: boolean; reason: string; etag?: string };

/**
 * Reads segment `key` into `placement`, only the frames it names (version 2; a version-1 segment is
 * read whole, since one hash covers its payload). Any failed check is reported, never thrown, and
 * the window's slots for this segment are then to be filled by the caller (a rebuild); a
 * ModelHashMismatchError is thrown, since nothing here can repair it.
 */
export async function readSegmentInto(store: ObjectStore, key: string, place: SegmentPlace, placement: FramePlacement): Promise<ReadResult> {
  let probe = new Uint8Array(HEADER_PROBE);
  let head = await store.readRange(key, 0, probe);
  if (!head) return { ok: false, missing: true, reason: 'missing' };
  const { etag } = head;
  try {
    let meta: SegmentHeader;
    try {
      meta = decodeSegmentHeader(probe.subarray(0, head.bytes));
    } catch (err) {
      if (!(err instanceof SegmentTruncatedError) || err.needed <= probe.byteLength || head.size < err.needed) throw err;
      probe = new Uint8Array(err.needed);
      head = await store.readRange(key, 0, probe);
      if (!head) return { ok: false, missing: true, reason: 'missing' };
      meta = decodeSegmentHeader(probe.subarray(0, head.bytes));
    }
    checkSegmentIdentity(meta, place);
    if (meta.shape[0] !== place.frames || meta.firstFrame !== place.firstFrame) {
      throw new SegmentMismatchError('shape', `${place.frames} frames from frame ${place.firstFrame}`, `${meta.shape[0]} frames from frame ${meta.firstFrame}`);
    }
    const end = meta.headerBytes + meta.payloadBytes;
    if (head.size < end) throw new SegmentTruncatedError(end, head.size);
    if (head.size > end) throw new SegmentMalformedError(`${head.size - end} bytes after the payload`);
    const bytes = meta.frameShas ? await readFrames(store, key, meta, placement) : await readWhole(store, key, meta, placement);
    return { ok: true, bytes };
  } catch (err) {
    if (!(err instanceof CacheError) || err instanceof SegmentMismatchError && err.field === 'model') throw err;
    return { ok: false, missing: false, reason: err.message, etag };
  }
}

/**
 * Version 2: the needed frames in batches, FRAME_LANES frames in flight, each hashed as soon as it
 * lands; a batch is placed once all its frames are verified.
 */
async function readFrames(store: ObjectStore, key: string, meta: SegmentHeader, p: FramePlacement): Promise<number> {
  if (holdsFramesAsStored(p, meta)) return readFramesIntoSlots(store, key, meta, p);
  const staging = p.staging ?? new Staging();
  for (let b = 0; b < p.count; b += FRAMES_PER_BATCH) {
    const n = Math.min(FRAMES_PER_BATCH, p.count - b);
    const batch = staging.take(n * meta.frameBytes);
    let next = 0;
    const lane = async () => {
      while (next < n) {
        const i = next++;
        const f = p.from + b + i;
        const into = batch.subarray(i * meta.frameBytes, (i + 1) * meta.frameBytes);
        const got = await store.readRange(key, meta.headerBytes + f * meta.frameBytes, into);
        if (!got || got.bytes !== meta.frameBytes) throw new SegmentTruncatedError(meta.frameBytes, got?.bytes ?? 0);
        await verifySegmentFrame(meta, f, into);
      }
    };
    await Promise.all(Array.from({ length: Math.min(FRAME_LANES, n) }, lane));
    placeFrames(p.window, asKv(batch, meta), 0, n, p.g0 + b, p.shape);
  }
  return p.count * meta.frameBytes;
}

/**
 * Whether each of the window's slots is one stored frame, byte for byte: a frames-first window (one
 * run per frame) of the segment's dtype. Its frames are then read straight into their slots.
 */
function holdsFramesAsStored(p: FramePlacement, meta: SegmentHeader): boolean {
  const cache = p.window.cache;
  return p.shape.runs === 1 && (cache instanceof Uint16Array) === (meta.dtype === 'float16') && p.shape.headDim * cache.BYTES_PER_ELEMENT === meta.frameBytes;
}

/**
 * Version 2 into a frames-first window: each needed frame read into its slot (no staging, no
 * placement), FRAME_LANES frames in flight on the thread pool, each hashed on this thread as it
 * lands while the others are read. A frame that fails leaves its slot to the caller's rebuild.
 */
async function readFramesIntoSlots(store: ObjectStore, key: string, meta: SegmentHeader, p: FramePlacement): Promise<number> {
  const cache = p.window.cache;
  let next = 0;
  const lane = async () => {
    while (next < p.count) {
      const i = next++;
      const f = p.from + i;
      const slot = (p.g0 + i) % p.window.frames;
      const into = new Uint8Array(cache.buffer, cache.byteOffset + slot * meta.frameBytes, meta.frameBytes);
      const got = await store.readRange(key, meta.headerBytes + f * meta.frameBytes, into);
      if (!got || got.bytes !== meta.frameBytes) throw new SegmentTruncatedError(meta.frameBytes, got?.bytes ?? 0);
      verifySegmentFrameSync(meta, f, into);
    }
  };
  await Promise.all(Array.from({ length: Math.min(FRAME_LANES, p.count) }, lane));
  return p.count * meta.frameBytes;
}

/** Version 1: the whole payload and its one hash. */
async function readWhole(store: ObjectStore, key: string, meta: SegmentHeader, p: FramePlacement): Promise<number> {
  const payload = new Uint8Array(meta.payloadBytes);
  const got = await store.readRange(key, meta.headerBytes, payload);
  if (!got || got.bytes !== meta.payloadBytes) throw new SegmentTruncatedError(meta.headerBytes + meta.payloadBytes, meta.headerBytes + (got?.bytes ?? 0));
  if (!(await sha256Async(payload)).equals(meta.payloadSha!)) throw new ChecksumMismatchError('payload');
  placeFrames(p.window, asKv(payload, meta), p.from, p.count, p.g0, p.shape);
  return payload.byteLength;
}

/** A fresh (aligned) byte buffer of segment values as the typed array of its dtype. */
function asKv(bytes: Uint8Array, meta: SegmentHeader): KvData {
  return meta.dtype === 'float16'
    ? new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2)
    : new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

/**
 * Segment writes that run on after the chunk step that started them, keyed by segment key: the
 * next chunk's model calls do not wait for them. A reader of a segment this worker is still
 * writing waits for it; close() waits for all of them; a failed write is logged, and the segment
 * then reads as missing and is rebuilt from its frames by the next worker that needs it.
 */
export class SegmentWrites {
  private readonly pending = new Map<string, Promise<void>>();

  /** Runs `write` for `key` in the background. */
  start(key: string, write: () => Promise<void>, fields: Record<string, unknown> = {}): void {
    const started = performance.now();
    const done = write().then(
      () => log.debug('segment stored', { ...fields, key, ms: Math.round(performance.now() - started) }),
      (error) => log.error('segment write failed; the next reader rebuilds it from its frames', { ...fields, key, error: String(error) }),
    ).finally(() => {
      if (this.pending.get(key) === done) this.pending.delete(key);
    });
    this.pending.set(key, done);
  }

  /** Waits for the write of `key`, if one is in flight. */
  async settle(key: string): Promise<void> {
    await this.pending.get(key);
  }

  /** Waits for every write in flight (before a new one, to bound memory, and on close). */
  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending.values()]);
  }

  get size(): number {
    return this.pending.size;
  }
}
