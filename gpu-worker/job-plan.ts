import type { FrameGeometry } from '../shared/media/raster.js';
import { resolveLabel } from '../shared/model/labels.js';
import { nullLabel, type Manifest } from '../shared/model/manifest.js';
import type { ServedManifest } from '../shared/model/served.js';
import type { Job } from '../shared/schemas/job.js';
import { ChunkFailure } from './errors.js';

/** What a job means for this model: chunking, batch rows and labels (constant for the whole job). */
export interface JobPlan {
  chunkFrames: number;
  initFrames: number;
  /** Global index of chunk 0's first frame: after the starting frames, or after the parent's frames. */
  startFrame: number;
  /** Chunk k's noise (and context noise) is keyed by chunkOffset + k: 0, or where a parent left off. */
  chunkOffset: number;
  framesTotal: number;
  chunksTotal: number;
  /** Classifier-free guidance: every call runs [label, null label] and its cache has 2 rows. */
  guided: boolean;
  rows: 1 | 2;
  labels: number[];
}

export function jobPlan(job: Job, m: ServedManifest): JobPlan {
  const { request } = job;
  // A job is cut in the chunk length it was accepted with. Jobs from before that was recorded were
  // accepted in the model's trained length, which every earlier manifest served. The same graph
  // serves any length up to the trained one (causal attention), so a worker whose manifest serves
  // another length still finishes the job as it began.
  const longest = m.trained_chunk_frames ?? m.chunk_frames;
  const chunkFrames = job.model.chunk_frames ?? longest;
  if (chunkFrames > longest || m.p_max + chunkFrames > m.l_train) {
    throw new ChunkFailure('model_mismatch', `job was accepted in chunks of ${chunkFrames} frames; this model serves at most ${longest}`);
  }
  const initFrames = request.init_frames.count;
  if (initFrames > m.p_max) {
    throw new ChunkFailure('bad_request', `${initFrames} starting frames exceed the model's window of ${m.p_max}`);
  }
  const label = labelIndex(request.label, m);
  const nul = m.format === 1 ? nullLabel(m) : undefined;
  const guided = label !== undefined && nul !== undefined && m.guidance.supported && request.guidance !== 1;
  const labels = guided ? [label, nul] : [label ?? nul ?? 0];
  return {
    chunkFrames,
    initFrames,
    startFrame: job.parent?.start_frame ?? initFrames,
    chunkOffset: job.parent?.chunk_offset ?? 0,
    framesTotal: request.frames,
    chunksTotal: Math.ceil(request.frames / chunkFrames),
    guided,
    rows: guided ? 2 : 1,
    labels,
  };
}

/** Global index of chunk k's first frame. */
export function firstFrameOf(plan: Pick<JobPlan, 'startFrame' | 'chunkFrames'>, k: number): number {
  return plan.startFrame + k * plan.chunkFrames;
}

/** Frames chunk k makes: the chunk length, or fewer for a last chunk that ends the video early. */
export function framesOfChunk(plan: Pick<JobPlan, 'chunkFrames' | 'framesTotal'>, k: number): number {
  return Math.min(plan.chunkFrames, plan.framesTotal - k * plan.chunkFrames);
}

/** The job's label as a class index; a label the model does not know fails the job. */
function labelIndex(label: number | string | undefined, m: Pick<ServedManifest, 'labels'>): number | undefined {
  if (label === undefined) return undefined;
  const index = resolveLabel(m, label);
  if (index === null) throw new ChunkFailure('bad_request', `unknown label ${JSON.stringify(label)}`);
  return index;
}

export function geometry(m: Pick<Manifest, 'frame'>): FrameGeometry {
  return { channels: m.frame.channels, height: m.frame.height, width: m.frame.width, range: m.frame.range };
}
