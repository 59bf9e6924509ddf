/**
 * A stand-in for the step graph at any geometry, for the paper-scale bench: it takes and emits
 * tensors of the manifest's exact shapes and dtypes and spends a fixed model time per call, so the
 * pipeline around it (cache window, segments, store, queue) does all of its real work at full size.
 *
 * Its outputs depend on its inputs, so a window assembled wrongly shows in the frames: the
 * prediction is a small value taken from a sample of the cache and of x; each K/V frame is filled
 * with an fp16 value derived from its global position and x. The model time is counted as
 * configured (or as long as making the outputs took, if longer), not as the call's wall time, so
 * anything that delays the pipeline, such as a blocked event loop, shows as overhead and is never
 * hidden inside a model call.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { StepFetch, StepGraph, StepInput, StepOutput } from '../gpu-worker/model-session.js';
import { CACHE_LAYOUT, frameFloats, FRAMES_FIRST_CACHE_LAYOUT, parseManifest, type Manifest } from '../shared/model/manifest.js';

/** The network's geometry: the paper's XL/2 by default. */
export interface Geometry {
  name: string;
  depth: number;
  heads: number;
  headDim: number;
  tokensPerFrame: number;
  chunkFrames: number;
  pMax: number;
}

export const XL2: Geometry = { name: 'xl2', depth: 28, heads: 16, headDim: 72, tokensPerFrame: 256, chunkFrames: 8, pMax: 25 };

/**
 * The manifest of a stand-in network: `base` (frames, schedule, labels) with `g`'s geometry, fp16
 * K/V, its window taken frames first (SCALE_CACHE_LAYOUT=layers: one input per layer and K/V). Frames keep the base's small size: the paper's model works on 32x32x4 latents, and the
 * sampler's work on them is not what this bench measures.
 */
export function standInManifest(
  base: Manifest, g: Geometry, extra: Record<string, unknown> = {}, layout: 'frames' | 'layers' = process.env.SCALE_CACHE_LAYOUT === 'layers' ? 'layers' : 'frames',
): Manifest {
  // The window frames first (one cache input), or as one input per layer and K/V.
  const framesFirst = layout === 'frames';
  const cache = framesFirst ? ['cache'] : Array.from({ length: 2 * g.depth }, (_, i) => `${i % 2 ? 'v' : 'k'}${i >> 1}`);
  return parseManifest({
    ...base,
    ...extra,
    name: `${g.name}-standin`,
    onnx_sha256: createHash('sha256').update(`stand-in ${JSON.stringify(g)}`).digest('hex'),
    chunk_frames: g.chunkFrames,
    trained_chunk_frames: g.chunkFrames,
    p_max: g.pMax,
    l_train: g.pMax + g.chunkFrames,
    depth: g.depth,
    heads: g.heads,
    head_dim: g.headDim,
    width: g.heads * g.headDim,
    tokens_per_frame: g.tokensPerFrame,
    kv_dtype: 'float16',
    cache_dtype: process.env.SCALE_CACHE_DTYPE ?? 'float16',
    cache_layout: framesFirst ? [...FRAMES_FIRST_CACHE_LAYOUT] : [...CACHE_LAYOUT],
    io: { ...base.io, inputs: { ...base.io.inputs, cache } },
  }, `${g.name} stand-in`);
}

export async function loadBaseManifest(dir: string): Promise<Manifest> {
  return parseManifest(JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')));
}

/** One call as the bench sees it: when it started and ended, and what it fetched. */
export interface CallRecord { start: number; end: number; fetch?: StepFetch }

export class StandInModel implements StepGraph {
  /** Configured model time of all calls so far, in seconds. */
  modelSeconds = 0;
  calls: CallRecord[] = [];

  /**
   * `blocking`: each call holds the event loop for its whole model time, as onnxruntime-node's
   * `run` does (a synchronous call inside a setImmediate); by default a call waits without holding
   * it, as a GPU run awaited off the event loop would.
   */
  constructor(readonly manifest: Manifest, private readonly stepMs: number, private readonly blocking = false) {}

  async step(input: StepInput): Promise<StepOutput>;
  async step<K extends StepFetch>(input: StepInput, fetch: K): Promise<Pick<StepOutput, K>>;
  async step(input: StepInput, fetch?: StepFetch): Promise<Partial<StepOutput>> {
    // Dispatched as onnxruntime dispatches a run: the caller's pending work gets its turn first.
    await new Promise((r) => setImmediate(r));
    const start = performance.now();
    const m = this.manifest;
    const { rows, frames: F, cacheFrames: P } = input;
    const perFrame = m.depth * 2 * rows * m.tokens_per_frame * m.width;
    if (input.cache.length !== P * perFrame) throw new RangeError(`cache holds ${input.cache.length} values, expected ${P * perFrame}`);
    if (input.x.length !== rows * F * frameFloats(m)) throw new RangeError(`x holds ${input.x.length} values`);
    const seed = sample(input.cache) + sample(input.x);
    const out: Partial<StepOutput> = {};
    if (fetch !== 'kv') out.prediction = new Float32Array(input.x.length).fill(Math.sin(seed) * 0.01);
    if (fetch !== 'prediction') {
      // A fresh buffer per call, as onnxruntime returns one; filling it is the device-to-host copy.
      const kv = new Uint16Array(F * perFrame);
      for (let f = 0; f < F; f++) kv.subarray(f * perFrame, (f + 1) * perFrame).fill(fp16Of(input.pos + f, seed));
      out.kv = kv;
    }
    // Making the outputs is the model's work too (the device-to-host copy): it counts as model
    // time where it takes longer than the configured time, on a loaded host.
    const own = performance.now() - start;
    if (own < this.stepMs && this.blocking) while (performance.now() < start + this.stepMs);
    if (own < this.stepMs) await until(start + this.stepMs);
    this.modelSeconds += Math.max(this.stepMs, own) / 1000;
    this.calls.push({ start, end: performance.now(), fetch });
    return out;
  }

  async release(): Promise<void> {}
}

/**
 * Resolves at `deadline` (performance.now() time): a timer for all but the last millisecond, then
 * turns of the event loop. A bare setTimeout fires about a millisecond late (libuv rounds its clock
 * to milliseconds), which over 100 calls a chunk would count 2% of the model time as the pipeline's
 * overhead; a GPU run's completion has no such rounding. A blocked event loop still delays it.
 */
async function until(deadline: number): Promise<void> {
  const wait = deadline - performance.now() - 1;
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  while (performance.now() < deadline) await new Promise((r) => setImmediate(r));
}

/** A cheap summary of a few values spread over the array (bits for fp16, values for floats). */
function sample(a: Float32Array | Uint16Array): number {
  let s = 0;
  const stride = Math.max(1, Math.floor(a.length / 61));
  for (let i = 0; i < a.length; i += stride) s += a[i] * ((i % 7) + 1);
  return Number.isFinite(s) ? s % 1e6 : 0;
}

/** A finite fp16 bit pattern in [1, 2) that depends on the frame's global position and the input. */
function fp16Of(globalFrame: number, seed: number): number {
  return 0x3c00 | ((globalFrame * 131 + Math.floor(Math.abs(seed) * 977)) & 0x3ff);
}
