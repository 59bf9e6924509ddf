import { CacheGapError, SegmentMismatchError } from './errors.js';
import { f16Table, f32ToF16 } from './f16.js';
import type { KvData } from './segment.js';

/** What the reader knows of a stored segment before fetching it (from its key and the job). */
export interface SegmentInfo {
  chunk: number;
  /** Global index of its first frame. */
  firstFrame: number;
  frames: number;
}

/** Which segments to read, oldest first, and how many leading frames of the oldest to drop. */
export interface CachePlan<S extends SegmentInfo = SegmentInfo> {
  segments: S[];
  skipFrames: number;
  /** P: frames in the assembled cache, min(available, pMax). */
  frames: number;
  /** Global index of the cache's first frame. */
  firstFrame: number;
}

export interface PlanOptions {
  /** Where the next chunk starts: the newest segment must end exactly here (catches a lost last write). */
  endFrame?: number;
  /** Global index of the job's first frame; nothing older is expected to exist. Default 0. */
  startFrame?: number;
}

/**
 * Picks the newest segments that together hold the last min(total, pMax) frames, so a chunk reads
 * a bounded number of segments however long the video is. Any discontinuity is a CacheGapError.
 */
export function planCacheRead<S extends SegmentInfo>(
  available: readonly S[],
  pMax: number,
  opts: PlanOptions = {},
): CachePlan<S> {
  const startFrame = opts.startFrame ?? 0;
  const newestFirst = [...available].sort((a, b) => b.firstFrame - a.firstFrame || b.chunk - a.chunk);
  const top = newestFirst[0];
  let end = opts.endFrame ?? (top ? top.firstFrame + top.frames : startFrame);
  const first = end;
  const chosen: S[] = [];
  let covered = 0;
  for (const seg of newestFirst) {
    if (covered >= pMax || end <= startFrame) break;
    const segEnd = seg.firstFrame + seg.frames;
    const prev = chosen[chosen.length - 1];
    // Chunk order must follow frame order, or a re-keyed/duplicated segment slipped in.
    if (segEnd !== end || seg.frames <= 0 || (prev && seg.chunk >= prev.chunk)) {
      throw new CacheGapError(end, segEnd, seg.chunk);
    }
    chosen.push(seg);
    covered += seg.frames;
    end = seg.firstFrame;
  }
  // Ran out of segments before pMax frames or the job's first frame: an older one is missing.
  if (covered < pMax && end > startFrame) throw new CacheGapError(end, undefined);
  const frames = Math.min(covered, pMax);
  return { segments: chosen.reverse(), skipFrames: covered - frames, frames, firstFrame: first - frames };
}

/** How one frame's K/V divide into contiguous head_dim runs (depth * 2 * batch * tokens * heads of them). */
export interface AttentionShape {
  runs: number;
  headDim: number;
}

/**
 * The element type the step graph takes its cache in: floats, or fp16 bits (a window half the size,
 * fed to the graph as it is and filled from fp16 segments by copying bits, never widening).
 */
export type CacheDtype = 'float16' | 'float32';

/** A window of no frames, in `dtype`: what the starting frames (or chunk 0 without them) see. */
export function emptyWindow(dtype: CacheDtype = 'float32', firstFrame = 0): AssembledWindow {
  return { cache: dtype === 'float16' ? new Uint16Array(0) : new Float32Array(0), frames: 0, firstFrame };
}

/** A cache window in the graph's layout: floats or fp16 bits (see CacheDtype). */
export interface AssembledWindow {
  cache: KvData;
  frames: number;
  firstFrame: number;
}

/** A zero-filled window of `frames` ring slots in `dtype`, for a reader that fills it frame by frame (placeFrames). */
export function allocateWindow(frames: number, firstFrame: number, shape: AttentionShape, dtype: CacheDtype): AssembledWindow {
  const n = frames * shape.runs * shape.headDim;
  return { cache: dtype === 'float16' ? new Uint16Array(n) : new Float32Array(n), frames, firstFrame };
}

/**
 * The cache window in the step graph's layout, [depth, 2, B, N, H, P, hd], frames in *ring order*:
 * global frame g sits in slot g mod P. Every cached frame is visible to every frame of a call and
 * already carries its position in its K, so the order of the slots does not change the maths; ring
 * order lets the next chunk overwrite only its oldest frames (advanceCacheWindow) instead of
 * rebuilding the window, and a worker that assembles the same window from segments
 * (assembleAttentionCache) gets the very same bytes.
 */
export function assembleAttentionCache(plan: CachePlan, data: readonly KvData[], shape: AttentionShape, dtype: CacheDtype = 'float32'): AssembledWindow {
  if (data.length !== plan.segments.length) {
    throw new RangeError(`assembleAttentionCache: ${data.length} arrays for ${plan.segments.length} planned segments`);
  }
  const window = allocateWindow(plan.frames, plan.firstFrame, shape, dtype);
  let g = plan.firstFrame; // global index of the next frame to place
  plan.segments.forEach((seg, i) => {
    checkFrames(data[i], seg.frames, shape);
    const skip = i === 0 ? plan.skipFrames : 0;
    placeFrames(window, data[i], skip, seg.frames - skip, g, shape);
    g += seg.frames - skip;
  });
  return window;
}

/**
 * The window after `window` once `frames` new frames (K/V frames-first, starting at global frame
 * `firstFrame`, right where the window ends) join it, keeping at most `pMax`. A full window is
 * updated in place (only the new frames are written, over the oldest ones); a growing one is copied
 * into a larger buffer of the same dtype. `kv` is floats or fp16 bits. Equals
 * assembleAttentionCache of the same frames (as stored and read back), byte for byte.
 */
export function advanceCacheWindow(
  window: AssembledWindow,
  kv: KvData,
  firstFrame: number,
  frames: number,
  pMax: number,
  shape: AttentionShape,
): AssembledWindow {
  checkFrames(kv, frames, shape);
  const end = window.firstFrame + window.frames;
  if (firstFrame !== end) throw new RangeError(`advanceCacheWindow: new frames start at ${firstFrame}, the window ends at ${end}`);
  const P = Math.min(window.frames + frames, pMax);
  const start = firstFrame + frames - P; // global index of the new window's first frame
  const keepFrom = Math.max(start, window.firstFrame);
  let next: AssembledWindow = { cache: window.cache, frames: P, firstFrame: start };
  if (P !== window.frames && shape.runs === 1) {
    // Frames first (one run per frame): grown in place, in a buffer of P_max frames from the first growth on.
    next = { cache: growFramesFirst(window, P, start, pMax, shape.headDim), frames: P, firstFrame: start };
  } else if (P !== window.frames) {
    // Growing (the first chunks of a job): the slot of a kept frame changes with P.
    next = allocateWindow(P, start, shape, window.cache instanceof Uint16Array ? 'float16' : 'float32');
    const { runs, headDim: hd } = shape;
    const [src, dst, w] = wordViews(window.cache, next.cache, hd);
    for (let a = 0; a < runs; a++) {
      for (let g = keepFrom; g < end; g++) {
        const s = (a * window.frames + (g % window.frames)) * w, d = (a * P + (g % P)) * w;
        for (let k = 0; k < w; k++) dst[d + k] = src[s + k];
      }
    }
  }
  const skip = Math.max(0, start - firstFrame);
  placeFrames(next, kv, skip, frames - skip, firstFrame + skip, shape);
  return next;
}

/**
 * The cache of a frames-first window (frame g in slot g mod P, each slot one run of `frameLen`
 * values) grown to `P` slots starting at global frame `start`: the kept frames moved to their new
 * slots inside the window's own buffer when it holds P_max frames (a window that reached P_max once
 * never allocates again), else in a fresh buffer of P_max frames. The new frames' slots are left for
 * the caller to fill.
 */
function growFramesFirst(window: AssembledWindow, P: number, start: number, pMax: number, frameLen: number): KvData {
  const old = window.cache;
  const capacity = Math.min(pMax, Math.floor(old.buffer.byteLength / (frameLen * old.BYTES_PER_ELEMENT)));
  const fits = old.byteOffset === 0 && capacity >= P;
  const whole = fits
    ? (old instanceof Uint16Array ? new Uint16Array(old.buffer, 0, capacity * frameLen) : new Float32Array(old.buffer, 0, capacity * frameLen))
    : (old instanceof Uint16Array ? new Uint16Array(pMax * frameLen) : new Float32Array(pMax * frameLen));
  if (!fits) whole.set(old);
  const n = window.frames;
  // Chronological order (oldest frame in slot 0), the dropped oldest frames out, then the ring order of P slots.
  if (n > 0) rotateFrames(whole, n, window.firstFrame % n, frameLen);
  const drop = start - window.firstFrame;
  if (drop > 0) whole.copyWithin(0, drop * frameLen, n * frameLen);
  rotateFrames(whole, P, (P - (start % P)) % P, frameLen);
  return whole.subarray(0, P * frameLen);
}

/** Rotates the first `n` frames of `a` left by `r` (slot r's frame to slot 0) in place, one frame of scratch per cycle. */
function rotateFrames(a: KvData, n: number, r: number, frameLen: number): void {
  if (r === 0) return;
  const scratch = a instanceof Uint16Array ? new Uint16Array(frameLen) : new Float32Array(frameLen);
  const frame = (i: number) => i * frameLen;
  const cycles = gcd(n, r);
  for (let i = 0; i < cycles; i++) {
    scratch.set(a.subarray(frame(i), frame(i + 1)));
    let j = i;
    for (;;) {
      let k = j + r;
      if (k >= n) k -= n;
      if (k === i) break;
      a.copyWithin(frame(j), frame(k), frame(k + 1));
      j = k;
    }
    a.set(scratch, frame(j));
  }
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** Two same-kind arrays as 32-bit words where runs of `hd` values allow it (bit-exact, fewer trips), and the words per run. */
function wordViews(src: KvData, dst: KvData, hd: number): [KvData | Uint32Array, KvData | Uint32Array, number] {
  const bpe = dst.BYTES_PER_ELEMENT;
  if ((hd * bpe) % 4 !== 0 || src.byteOffset % 4 !== 0 || dst.byteOffset % 4 !== 0) return [src, dst, hd];
  return [new Uint32Array(src.buffer, src.byteOffset, (src.length * bpe) >> 2), new Uint32Array(dst.buffer, dst.byteOffset, (dst.length * bpe) >> 2), (hd * bpe) / 4];
}

function checkFrames(data: KvData, frames: number, shape: AttentionShape): void {
  const want = frames * shape.runs * shape.headDim;
  if (data.length !== want) throw new SegmentMismatchError('shape', `${want} floats`, `${data.length} floats`);
}

/** Values per run from which placeFrames copies each run as a block rather than word by word. */
const LONG_RUN = 4096;

/**
 * Frames [from, from + count) of frames-first K/V `src` (floats or fp16 bits) into the ring slots of
 * `window`, the first being global frame g0. fp16 into fp16 and floats into floats copy bits; fp16
 * into floats widens exactly; floats into fp16 rounds as the codec does. Run-major: each head_dim
 * run of the window takes `count` consecutive slots, so writes go forward through the window
 * instead of striding across all of it once per frame (3-5x faster at the paper's size).
 */
export function placeFrames(window: AssembledWindow, src: KvData, from: number, count: number, g0: number, shape: AttentionShape): void {
  const { runs, headDim: hd } = shape;
  const P = window.frames;
  const dst = window.cache;
  if (count <= 0) return;
  if (count > P) throw new RangeError(`placeFrames: ${count} frames into a window of ${P}`);
  if (src.length < (from + count) * runs * hd) throw new RangeError('placeFrames: source too short');
  const frameLen = runs * hd;
  const sameKind = (src instanceof Uint16Array) === (dst instanceof Uint16Array);
  // Long runs (a frames-first window: one run per frame): one memory copy per run and frame.
  if (sameKind && hd >= LONG_RUN) {
    for (let a = 0; a < runs; a++) {
      for (let f = 0; f < count; f++) {
        const s = (from + f) * frameLen + a * hd;
        (dst as Uint16Array).set(src.subarray(s, s + hd) as Uint16Array, (a * P + ((g0 + f) % P)) * hd);
      }
    }
    return;
  }
  // Same kind: copy 32-bit words (bit-exact, and half the loop trips for fp16) when aligned.
  const bpe = dst.BYTES_PER_ELEMENT;
  if (sameKind && (hd * bpe) % 4 === 0 && src.byteOffset % 4 === 0 && dst.byteOffset % 4 === 0) {
    const w = (hd * bpe) / 4, per = bpe / 4; // words per run, words per element
    const s32 = new Uint32Array(src.buffer, src.byteOffset, (src.length * bpe) >> 2);
    const d32 = new Uint32Array(dst.buffer, dst.byteOffset, (dst.length * bpe) >> 2);
    const fl = frameLen * per;
    for (let a = 0; a < runs; a++) {
      const sa = from * fl + a * w;
      for (let f = 0; f < count; f++) {
        const s = sa + f * fl, d = (a * P + ((g0 + f) % P)) * w;
        for (let k = 0; k < w; k++) d32[d + k] = s32[s + k];
      }
    }
    return;
  }
  const half = src instanceof Uint16Array && !(dst instanceof Uint16Array) ? f16Table() : undefined;
  const round = !(src instanceof Uint16Array) && dst instanceof Uint16Array ? new Uint16Array(hd) : undefined;
  for (let a = 0; a < runs; a++) {
    for (let f = 0; f < count; f++) {
      const s = (from + f) * frameLen + a * hd, d = (a * P + ((g0 + f) % P)) * hd;
      if (half) for (let k = 0; k < hd; k++) dst[d + k] = half[src[s + k]];
      else if (round) dst.set(f32ToF16(src.subarray(s, s + hd) as Float32Array, round), d);
      else for (let k = 0; k < hd; k++) dst[d + k] = src[s + k];
    }
  }
}
