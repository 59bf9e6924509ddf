import * as ort from 'onnxruntime-node';
import { f16ToF32 } from '../shared/cache/f16.js';
import type { KvData } from '../shared/cache/segment.js';
import { framesFirstCache, loadManifest, type Manifest } from '../shared/model/manifest.js';
import { log } from './log.js';

/** Execution providers the worker can be asked for; CUDA falls back to CPU when it is absent. */
export const PROVIDERS = ['cpu', 'cuda'] as const;
export type ProviderName = (typeof PROVIDERS)[number];

/** ORT_PROVIDER's value: `cpu` when unset, or `cuda`; anything else is an error naming the choices. */
export function providerFromEnv(raw: string | undefined): ProviderName {
  const value = raw ?? 'cpu';
  if (!(PROVIDERS as readonly string[]).includes(value)) throw new Error(`ORT_PROVIDER must be one of ${PROVIDERS.join(', ')}, got ${JSON.stringify(value)}`);
  return value as ProviderName;
}

/**
 * Opens every graph of `files` on one execution provider: the first, in order of preference, that
 * opens them all (CUDA where the image has it, else the CPU). Logs the provider used, with `fields`,
 * and each one that could not be had.
 */
export async function openOnProvider(
  files: readonly string[], prefer: ProviderName, threads: number | undefined, fields: Record<string, unknown>,
): Promise<{ sessions: ort.InferenceSession[]; provider: ProviderName }> {
  const order: ProviderName[] = prefer === 'cuda' ? ['cuda', 'cpu'] : ['cpu'];
  const options: ort.InferenceSession.SessionOptions = { graphOptimizationLevel: 'all', ...(threads ? { intraOpNumThreads: threads } : {}) };
  let lastError: unknown;
  for (const provider of order) {
    const opened = await Promise.allSettled(files.map((f) => ort.InferenceSession.create(f, { ...options, executionProviders: [provider] })));
    const sessions = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
    const failed = opened.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (!failed) {
      log.info('model loaded', { ...fields, provider, preferred: prefer });
      return { sessions, provider };
    }
    // Graphs that did open on this provider are let go before the next is tried.
    await Promise.all(sessions.map((s) => s.release()));
    lastError = failed.reason;
    log.warn('execution provider unavailable', { provider, error: String(failed.reason) });
  }
  throw lastError;
}

/** One call of the step graph: `rows` batch rows of `frames` frames after `cacheFrames` cached ones. */
export interface StepInput {
  x: Float32Array; // [rows, F, C, H, W]
  t: Float32Array; // [rows, F]
  labels: readonly number[]; // [rows]
  pos: number; // global index of x's first frame
  cache: KvData; // [depth, 2, rows, N, heads, P, head_dim] or frames first [P, depth, 2, rows, N, width]: the manifest's cache_layout, in its cache_dtype
  cacheFrames: number; // P
  rows: number;
  frames: number; // F
}

/** K/V as the graph emits them, in the manifest's kv_dtype: fp16 bits (Uint16Array) or floats. */
export type { KvData };

/** K/V values as floats (fp16 widened exactly). */
export const kvFloats = (kv: KvData): Float32Array => (kv instanceof Uint16Array ? f16ToF32(kv) : kv);

export interface StepOutput {
  prediction: Float32Array; // [rows, F, C, H, W]
  kv: KvData; // [F, depth, 2, rows, N, width]
}

/** Which outputs a call needs: a denoising step needs only the prediction, the cache write only kv. */
export type StepFetch = 'prediction' | 'kv';

/**
 * The step graph as the chunk step uses it: its manifest and one call. ModelSession runs the ONNX
 * graph; bench/scale.ts hands in a stand-in of the paper's geometry with the same contract.
 */
export interface StepGraph {
  readonly manifest: Manifest;
  step(input: StepInput): Promise<StepOutput>;
  step<K extends StepFetch>(input: StepInput, fetch: K): Promise<Pick<StepOutput, K>>;
  release(): Promise<void>;
}

/** The model as the pipeline sees it: its manifest and the step graph. */
export class ModelSession implements StepGraph {
  /** Seconds spent inside the step graph, for the pipeline's overhead figures. */
  modelSeconds = 0;
  calls = 0;

  private constructor(
    readonly manifest: Manifest,
    readonly provider: ProviderName,
    private readonly session: ort.InferenceSession,
  ) {}

  /**
   * Loads `dir`/manifest.json (checking the ONNX file's SHA-256) and opens the graph on the first
   * provider that works, in order of preference; the provider actually used is logged.
   */
  static async open(dir: string, prefer: ProviderName = 'cpu', threads?: number): Promise<ModelSession> {
    const { manifest, onnxPath } = await loadManifest(dir);
    const { sessions: [session], provider } = await openOnProvider([onnxPath], prefer, threads, { model: manifest.name, sha256: manifest.onnx_sha256 });
    return new ModelSession(manifest, provider, session);
  }

  async step(input: StepInput): Promise<StepOutput>;
  async step<K extends StepFetch>(input: StepInput, fetch: K): Promise<Pick<StepOutput, K>>;
  async step(input: StepInput, fetch?: StepFetch): Promise<Partial<StepOutput>> {
    const m = this.manifest;
    const { rows, frames: F, cacheFrames: P } = input;
    const { channels: C, height: H, width: W } = m.frame;
    const io = m.io;
    const feeds: Record<string, ort.Tensor> = {
      [io.inputs.x]: new ort.Tensor('float32', input.x, [rows, F, C, H, W]),
      [io.inputs.t]: new ort.Tensor('float32', input.t, [rows, F]),
      [io.inputs.label]: new ort.Tensor('int64', BigInt64Array.from(input.labels, BigInt), [rows]),
      [io.inputs.pos]: new ort.Tensor('int64', BigInt64Array.of(BigInt(input.pos)), [1]),
    };
    // The graph takes each layer's K and V as its own input (views into the one window), or, frames
    // first, the whole window as one input.
    const framesFirst = framesFirstCache(m);
    const inputs = framesFirst ? 1 : io.inputs.cache.length;
    const perInput = (framesFirst ? 2 * m.depth : 1) * rows * m.tokens_per_frame * m.heads * P * m.head_dim;
    if (input.cache.length !== inputs * perInput) {
      throw new RangeError(`cache holds ${input.cache.length} floats, expected ${inputs * perInput}`);
    }
    if ((input.cache instanceof Uint16Array) !== (m.cache_dtype === 'float16')) {
      throw new TypeError(`the window is ${input.cache instanceof Uint16Array ? 'float16' : 'float32'}, the graph's cache inputs are ${m.cache_dtype}`);
    }
    const dims = framesFirst ? [P, m.depth, 2, rows, m.tokens_per_frame, m.width] : [rows, m.tokens_per_frame, m.heads, P, m.head_dim];
    io.inputs.cache.forEach((name, i) => {
      const view = input.cache.subarray(i * perInput, (i + 1) * perInput);
      feeds[name] = view instanceof Uint16Array ? new ort.Tensor('float16', view, dims) : new ort.Tensor('float32', view, dims);
    });
    const started = performance.now();
    // Fetching one output spares copying the other (kv is ~100x a chunk's pixels) into JS memory.
    const names = fetch ? [io.outputs[fetch]] : [io.outputs.prediction, io.outputs.kv];
    const out = await this.session.run(feeds, names);
    this.modelSeconds += (performance.now() - started) / 1000;
    this.calls++;
    const kv = out[io.outputs.kv];
    if (kv && kv.type !== m.kv_dtype) throw new TypeError(`the graph's kv is ${kv.type}, the manifest says ${m.kv_dtype}`);
    return { prediction: out[io.outputs.prediction]?.data as Float32Array | undefined, kv: kv?.data as KvData | undefined };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
