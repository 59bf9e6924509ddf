import { CacheGapError, SegmentMismatchError } from './errors.js';
import { f16Table } from './f16.js';
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

/** The assembled cache: [P, depth, 2, B, N, width] floats, ready to feed as the model's `cache`. */
export interface AssembledCache {
  cache: Float32Array;
  frames: number;
  firstFrame: number;
}

/**
 * Concatenates the planned segments' K/V (one Float32Array per plan segment, same order). Frames are
 * the outermost axis, so dropping the oldest frames is a subarray and joining is a byte copy.
 */
export function assembleCache(plan: CachePlan, data: readonly Float32Array[], kvFrameFloats: number): AssembledCache {
  if (data.length !== plan.segments.length) {
    throw new RangeError(`assembleCache: ${data.length} arrays for ${plan.segments.length} planned segments`);
  }
  const cache = new Float32Array(plan.frames * kvFrameFloats);
  let o = 0;
  plan.segments.forEach((seg, i) => {
    const d = data[i];
    if (d.length !== seg.frames * kvFrameFloats) {
      throw new SegmentMismatchError('shape', `${seg.frames * kvFrameFloats} floats`, `${d.length} floats`);
    }
    const part = i === 0 ? d.subarray(plan.skipFrames * kvFrameFloats) : d;
    cache.set(part, o);
    o += part.length;
  });
  return { cache, frames: plan.frames, firstFrame: plan.firstFrame };
}

/** How one frame's K/V divide into contiguous head_dim runs (depth * 2 * batch * tokens * heads of them). */
export interface AttentionShape {
  runs: number;
  headDim: number;
}

/**
 * The cache window in the step graph's layout, [depth, 2, B, N, H, P, hd], frames in *ring order*:
 * global frame g sits in slot g mod P. Every cached frame is visible to every frame of a call and
 * already carries its position in its K, so the order of the slots does not change the maths; ring
 * order lets the next chunk overwrite only its oldest frames (advanceCacheWindow) instead of
 * rebuilding the window, and a worker that assembles the same window from segments
 * (assembleAttentionCache) gets the very same bytes.
 */
export function assembleAttentionCache(plan: CachePlan, data: readonly KvData[], shape: AttentionShape): AssembledCache {
  if (data.length !== plan.segments.length) {
    throw new RangeError(`assembleAttentionCache: ${data.length} arrays for ${plan.segments.length} planned segments`);
  }
  const P = plan.frames;
  const cache = new Float32Array(P * shape.runs * shape.headDim);
  let g = plan.firstFrame; // global index of the next frame to place
  plan.segments.forEach((seg, i) => {
    checkFrames(data[i], seg.frames, shape);
    const skip = i === 0 ? plan.skipFrames : 0;
    copyFrames(data[i], skip, seg.frames - skip, cache, P, g, shape);
    g += seg.frames - skip;
  });
  return { cache, frames: P, firstFrame: plan.firstFrame };
}

/**
 * The window after `window` once `frames` new frames (K/V frames-first, starting at global frame
 * `firstFrame`, right where the window ends) join it, keeping at most `pMax`. A full window is
 * updated in place (only the new frames are written, over the oldest ones); a growing one is copied
 * into a larger buffer. `kv` is floats or fp16 bits (widened while copied). Equals
 * assembleAttentionCache of the same frames (as stored and read back), byte for byte.
 */
export function advanceCacheWindow(
  window: AssembledCache,
  kv: KvData,
  firstFrame: number,
  frames: number,
  pMax: number,
  shape: AttentionShape,
): AssembledCache {
  checkFrames(kv, frames, shape);
  const end = window.firstFrame + window.frames;
  if (firstFrame !== end) throw new RangeError(`advanceCacheWindow: new frames start at ${firstFrame}, the window ends at ${end}`);
  const P = Math.min(window.frames + frames, pMax);
  const start = firstFrame + frames - P; // global index of the new window's first frame
  const keepFrom = Math.max(start, window.firstFrame);
  let cache = window.cache;
  if (P !== window.frames) {
    // Growing (the first chunks of a job): the slot of a kept frame changes with P.
    cache = new Float32Array(P * shape.runs * shape.headDim);
    const old = window.cache;
    const { runs, headDim: hd } = shape;
    for (let g = keepFrom; g < end; g++) {
      const src = (g % window.frames) * hd, dst = (g % P) * hd;
      for (let a = 0; a < runs; a++) {
        const s = a * window.frames * hd + src, d = a * P * hd + dst;
        for (let k = 0; k < hd; k++) cache[d + k] = old[s + k];
      }
    }
  }
  const skip = Math.max(0, start - firstFrame);
  copyFrames(kv, skip, frames - skip, cache, P, firstFrame + skip, shape);
  return { cache, frames: P, firstFrame: start };
}

function checkFrames(data: KvData, frames: number, shape: AttentionShape): void {
  const want = frames * shape.runs * shape.headDim;
  if (data.length !== want) throw new SegmentMismatchError('shape', `${want} floats`, `${data.length} floats`);
}

/**
 * Frames [from, from + count) of frames-first K/V (floats, or fp16 bits) into ring slots of `cache`
 * (P slots), the first being global frame g0.
 */
function copyFrames(
  src: KvData, from: number, count: number, cache: Float32Array, P: number, g0: number, shape: AttentionShape,
) {
  const { runs, headDim: hd } = shape;
  const half = src instanceof Uint16Array ? f16Table() : undefined;
  for (let f = 0; f < count; f++) {
    const slot = ((g0 + f) % P) * hd;
    const base = (from + f) * runs * hd;
    for (let a = 0; a < runs; a++) {
      const s = base + a * hd, d = a * P * hd + slot;
      if (half) for (let k = 0; k < hd; k++) cache[d + k] = half[src[s + k]];
      else for (let k = 0; k < hd; k++) cache[d + k] = src[s + k];
    }
  }
}
