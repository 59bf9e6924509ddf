import { CacheGapError, SegmentMismatchError } from './errors.js';

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
 * Like assembleCache, but writes the step graph's cache layout directly, [depth, 2, B, N, H, P, hd]
 * (frames moved inwards), so a chunk makes one pass over its cache instead of a join and a transpose.
 */
export function assembleAttentionCache(plan: CachePlan, data: readonly Float32Array[], shape: AttentionShape): AssembledCache {
  const { runs, headDim: hd } = shape;
  const frameFloats = runs * hd;
  if (data.length !== plan.segments.length) {
    throw new RangeError(`assembleAttentionCache: ${data.length} arrays for ${plan.segments.length} planned segments`);
  }
  const P = plan.frames;
  const cache = new Float32Array(P * frameFloats);
  let p = 0; // frame index within the assembled cache
  plan.segments.forEach((seg, i) => {
    const d = data[i];
    if (d.length !== seg.frames * frameFloats) {
      throw new SegmentMismatchError('shape', `${seg.frames * frameFloats} floats`, `${d.length} floats`);
    }
    for (let f = i === 0 ? plan.skipFrames : 0; f < seg.frames; f++, p++) {
      for (let a = 0; a < runs; a++) {
        const src = (f * runs + a) * hd;
        const dst = (a * P + p) * hd;
        for (let k = 0; k < hd; k++) cache[dst + k] = d[src + k];
      }
    }
  });
  return { cache, frames: plan.frames, firstFrame: plan.firstFrame };
}
