import * as ort from 'onnxruntime-node';
import { f16ToF32 } from '../shared/cache/f16.js';
import type { KvData } from '../shared/cache/segment.js';
import { loadManifestV2, type ManifestV2 } from '../shared/model/manifest-v2.js';
import { openOnProvider, type ProviderName } from './model-session.js';

/** One call of a format-2 step graph: `rows` rows of F latent frames after P cached frames. */
export interface LatentStepInput {
  x: Float32Array; // [rows, F, C, h, w] latents
  t: Float32Array; // [rows, F]
  clean: Float32Array; // [rows, F]: 1 in the cache-write pass
  pos: number; // global index of x's first frame
  cache: Float32Array; // [depth, 2, rows, N, heads, P, head_dim]: the temporal cache
  cacheFrames: number; // P
  cachePos?: BigInt64Array; // [P]: each slot's window position (rotary models)
  prefix?: Float32Array; // [depth, 2, rows, N, heads, T_p, head_dim]: the spatial prefix cache
  y?: Float32Array; // [rows, Ny, Cy]: the conditioning embedding (the null one: no prompts yet)
  rows: number;
  frames: number;
}

export interface LatentStepOutput {
  prediction: Float32Array; // [rows, F, 2C, h, w]: eps, then the variance values
  kv: Float32Array; // [F, depth, 2, rows, N, width], widened from the graph's fp16
  kvPrefix?: Float32Array; // same shape: each frame's spatial K/V
}

/** A format-2 model: the step graph with both caches, and the VAE graphs around it. */
export class LatentModelSession {
  private constructor(
    readonly manifest: ManifestV2,
    /** The execution provider the three graphs run on. */
    readonly provider: ProviderName,
    private readonly step: ort.InferenceSession,
    private readonly encoder: ort.InferenceSession,
    private readonly decoder: ort.InferenceSession,
    readonly nullEmbedding?: Float32Array,
  ) {}

  /**
   * Loads and checks `dir` (every file's SHA-256) and opens the three graphs on one provider: CUDA
   * when preferred and present, else the CPU (model-session.ts, openOnProvider).
   */
  static async open(dir: string, prefer: ProviderName = 'cpu', threads?: number): Promise<LatentModelSession> {
    const { manifest, files } = await loadManifestV2(dir);
    const { sessions: [step, encoder, decoder], provider } = await openOnProvider(
      [files.step, files.encoder, files.decoder], prefer, threads, { model: manifest.name, sha256: manifest.onnx_sha256 });
    let nullEmbedding: Float32Array | undefined;
    if (files.nullEmbedding) {
      const buf = await import('node:fs').then((fs) => fs.promises.readFile(files.nullEmbedding!));
      nullEmbedding = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    }
    return new LatentModelSession(manifest, provider, step, encoder, decoder, nullEmbedding);
  }

  /** RGB frames [n, 3, H, W] in [-1, 1] -> latents [n, C, h, w], scaled as the model was trained. */
  async encode(frames: Float32Array, n: number): Promise<Float32Array> {
    const m = this.manifest;
    const out = await this.encoder.run({ frames: new ort.Tensor('float32', frames, [n, 3, m.frame.height, m.frame.width]) });
    return out.latents.data as Float32Array;
  }

  /** Latents [n, C, h, w] -> RGB frames [n, 3, H, W] (not clipped; PNG encoding clamps). */
  async decode(latents: Float32Array, n: number): Promise<Float32Array> {
    const { latent } = this.manifest;
    const out = await this.decoder.run({ latents: new ort.Tensor('float32', latents, [n, latent.channels, latent.height, latent.width]) });
    return out.frames.data as Float32Array;
  }

  async run(input: LatentStepInput, fetch: 'prediction' | 'kv'): Promise<Partial<LatentStepOutput>> {
    const io = this.manifest.io;
    const out = await this.step.run(this.feeds(input), fetch === 'prediction' ? [io.outputs.prediction] : this.kvOutputs());
    const widen = (t?: ort.Tensor) => (t === undefined ? undefined : t.type === 'float16' ? f16ToF32(t.data as Uint16Array) : (t.data as Float32Array));
    return {
      prediction: out[io.outputs.prediction]?.data as Float32Array | undefined,
      kv: widen(out[io.outputs.kv]),
      kvPrefix: io.outputs.kv_prefix ? widen(out[io.outputs.kv_prefix]) : undefined,
    };
  }

  /**
   * The cache-write call: the frames' K/V (and spatial K/V) as the graph emits them, fp16 bits when
   * the manifest's kv_dtype is float16: half the memory of floats, the same values.
   */
  async writeKv(input: LatentStepInput): Promise<{ kv: KvData; kvPrefix?: KvData }> {
    const io = this.manifest.io;
    const out = await this.step.run(this.feeds(input), this.kvOutputs());
    const bits = (t: ort.Tensor) => {
      if ((t.type === 'float16') !== (this.manifest.kv_dtype === 'float16')) throw new TypeError(`the graph emits ${t.type} K/V; the manifest says ${this.manifest.kv_dtype}`);
      return t.data as KvData;
    };
    return { kv: bits(out[io.outputs.kv]), ...(io.outputs.kv_prefix ? { kvPrefix: bits(out[io.outputs.kv_prefix]) } : {}) };
  }

  /** The graph's K/V outputs: the temporal one, and the spatial one of a model with a prefix cache. */
  private kvOutputs(): string[] {
    const { outputs } = this.manifest.io;
    return [outputs.kv, ...(outputs.kv_prefix ? [outputs.kv_prefix] : [])];
  }

  private feeds(input: LatentStepInput): Record<string, ort.Tensor> {
    const m = this.manifest;
    const io = m.io;
    const { rows, frames: F, cacheFrames: P } = input;
    const { channels: C, height: h, width: w } = m.latent;
    const feeds: Record<string, ort.Tensor> = {
      [io.inputs.x]: new ort.Tensor('float32', input.x, [rows, F, C, h, w]),
      [io.inputs.t]: new ort.Tensor('float32', input.t, [rows, F]),
      [io.inputs.clean]: new ort.Tensor('float32', input.clean, [rows, F]),
      [io.inputs.pos]: new ort.Tensor('int64', BigInt64Array.of(BigInt(input.pos)), [1]),
    };
    const per = (frames: number) => rows * m.tokens_per_frame * m.heads * frames * m.head_dim;
    const views = (names: readonly string[], buf: Float32Array, frames: number) => {
      if (buf.length !== names.length * per(frames)) throw new RangeError(`cache holds ${buf.length} floats, expected ${names.length * per(frames)}`);
      names.forEach((name, i) => {
        feeds[name] = new ort.Tensor('float32', buf.subarray(i * per(frames), (i + 1) * per(frames)), [rows, m.tokens_per_frame, m.heads, frames, m.head_dim]);
      });
    };
    views(io.inputs.cache, input.cache, P);
    if (io.inputs.prefix) views(io.inputs.prefix, input.prefix ?? new Float32Array(io.inputs.prefix.length * per(m.prefix_cache!.frames)), m.prefix_cache!.frames);
    if (io.inputs.cache_pos) feeds[io.inputs.cache_pos] = new ort.Tensor('int64', input.cachePos ?? BigInt64Array.from({ length: P }, (_, i) => BigInt(i)), [P]);
    if (io.inputs.y) {
      const { tokens, channels } = m.conditioning!;
      const y = input.y ?? repeatRows(this.nullEmbedding!, rows);
      feeds[io.inputs.y] = new ort.Tensor('float32', y, [rows, tokens, channels]);
    }
    return feeds;
  }

  async release(): Promise<void> {
    await Promise.all([this.step.release(), this.encoder.release(), this.decoder.release()]);
  }
}

function repeatRows(x: Float32Array, rows: number): Float32Array {
  if (rows === 1) return x;
  const out = new Float32Array(x.length * rows);
  for (let r = 0; r < rows; r++) out.set(x, r * x.length);
  return out;
}
