import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { ManifestInvalidError, ModelFileMissingError, OnnxHashMismatchError } from './errors.js';

/** Axis order of `kv` and `cache`; frames outermost so a cache is a byte concatenation of segments. */
export const KV_LAYOUT = ['frames', 'depth', 'kv', 'batch', 'tokens', 'width'] as const;
/**
 * Axis order of the cache the worker assembles: the graph takes it as one input per layer and K/V
 * (`io.inputs.cache`, in the order of the two outer axes), so no layer slices or transposes it.
 */
export const CACHE_LAYOUT = ['depth', 'kv', 'batch', 'tokens', 'heads', 'frames', 'head_dim'] as const;
/**
 * The other cache layout a graph may declare: the window frames outermost, as segments store
 * them, fed as one input (`io.inputs.cache` names one). A frame is then one contiguous block, so the
 * worker moves the window on by copying a chunk's K/V as they are and reads a segment's frames
 * straight into their slots; the graph gathers each layer's K and V itself (free on a GPU).
 */
export const FRAMES_FIRST_CACHE_LAYOUT = KV_LAYOUT;

/** Whether the graph takes its window frames outermost (FRAMES_FIRST_CACHE_LAYOUT). */
export const framesFirstCache = (m: { cache_layout: readonly string[] }) => m.cache_layout[0] === 'frames';

const posInt = z.int().positive();
const name = z.string().min(1);

/** A layout field: exactly these axis names, in this order. */
const layoutSchema = <const A extends readonly [string, ...string[]]>(axes: A) =>
  z.tuple(axes.map((a) => z.literal(a)) as { [I in keyof A]: z.ZodLiteral<A[I]> });

/** The schedule's own rules, in every manifest format: one value per train timestep, non-increasing. */
export function checkSchedule(schedule: { train_timesteps: number; alphas_cumprod: readonly number[] }, fail: (path: string, message: string) => void): void {
  const ac = schedule.alphas_cumprod;
  if (ac.length !== schedule.train_timesteps) fail('schedule', 'alphas_cumprod length must equal train_timesteps');
  // t counts noise up: a schedule that is not non-increasing is a mis-export, not a design choice.
  for (let i = 1; i < ac.length; i++) {
    if (ac[i] > ac[i - 1]) {
      fail('schedule', `alphas_cumprod must be non-increasing (index ${i})`);
      break;
    }
  }
}

/** The K/V cache's geometry and layouts: the same fields in every manifest format. */
export const KV_CACHE_GEOMETRY = {
  p_max: posInt,
  l_train: posInt,
  depth: posInt,
  heads: posInt,
  head_dim: posInt,
  width: posInt,
  tokens_per_frame: posInt,
  kv_dtype: z.enum(['float16', 'float32']),
  kv_layout: layoutSchema(KV_LAYOUT),
  /**
   * The layout of the window the worker keeps and feeds the graph (CACHE_LAYOUT or
   * FRAMES_FIRST_CACHE_LAYOUT; frames in ring order either way, global frame g in slot g mod P).
   */
  cache_layout: z.union([layoutSchema(CACHE_LAYOUT), layoutSchema(FRAMES_FIRST_CACHE_LAYOUT)]),
};

/** The model contract of model/artifacts/NAME/manifest.json (see docs/design.md). */
export const ManifestSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/),
    format: z.literal(1),
    // A bare file name: the manifest must not point outside its own folder.
    onnx: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*\.onnx$/),
    onnx_sha256: z.string().regex(/^[0-9a-f]{64}$/, 'lower-case hex SHA-256'),
    frame: z.object({
      channels: z.union([z.literal(1), z.literal(3)]),
      height: posInt,
      width: posInt,
      range: z.tuple([z.number(), z.number()]).refine(([lo, hi]) => lo < hi, 'range must be [lo, hi] with lo < hi'),
    }),
    /** Frames generated per chunk (and per task): the serving length. */
    chunk_frames: posInt,
    /**
     * The chunk length the model was trained on. Temporal attention is causal, so a chunk of l frames
     * is exactly the first l frames of a trained chunk: a model serves any chunk_frames up to this.
     */
    trained_chunk_frames: posInt.optional(),
    ...KV_CACHE_GEOMETRY,
    /**
     * Element type of the graph's cache inputs. float16 lets the worker keep the window as the fp16
     * bits segments store (half the memory, no widening on any path); absent = float32.
     */
    cache_dtype: z.enum(['float16', 'float32']).default('float32'),
    schedule: z.object({
      type: z.string().min(1),
      train_timesteps: posInt,
      alphas_cumprod: z.array(z.number().gt(0).lte(1)).min(1),
    }),
    prediction: z.enum(['v', 'eps', 'x0']),
    default_steps: posInt,
    labels: z.array(z.string().min(1)),
    null_label: z.int().nonnegative().optional(),
    guidance: z.object({ supported: z.boolean(), default: z.number().nonnegative() }),
    /**
     * Context noise: the cache-write pass sees each conditioning frame noised at this timestep
     * (deterministic noise, shared/sampler/context.ts) and embeds it at it. 0 = clean frames at t = 0.
     */
    context_t: z.int().nonnegative().default(0),
    io: z.object({
      /**
       * `cache`: one input per layer and K/V, [batch, tokens, heads, frames, head_dim] each: K0, V0,
       * K1, V1, ...; or, with FRAMES_FIRST_CACHE_LAYOUT, one input [frames, depth, 2, batch, tokens, width].
       */
      inputs: z.object({ x: name, t: name, label: name, pos: name, cache: z.array(name).min(1) }),
      outputs: z.object({ prediction: name, kv: name }),
    }),
  })
  .superRefine((m, ctx) => {
    const fail = (p: string, message: string) => ctx.addIssue({ code: 'custom', path: [p], message });
    if (m.width !== m.heads * m.head_dim) fail('width', 'width must equal heads * head_dim');
    if (framesFirstCache(m)) {
      if (m.io.inputs.cache.length !== 1) fail('io', 'with cache_layout frames first, io.inputs.cache must name one input (the whole window)');
    } else if (m.io.inputs.cache.length !== 2 * m.depth) fail('io', 'io.inputs.cache must name 2 * depth inputs (K and V of every layer)');
    // Cyclic positions: the window (P_max cached + one chunk) must fit in one period to stay distinct.
    if (m.l_train < m.p_max + m.chunk_frames) fail('l_train', 'l_train must be >= p_max + chunk_frames');
    if (m.trained_chunk_frames !== undefined && m.chunk_frames > m.trained_chunk_frames) {
      fail('chunk_frames', `chunk_frames must be <= trained_chunk_frames (${m.trained_chunk_frames}): later frames of a chunk were never trained`);
    }
    checkSchedule(m.schedule, fail);
    if (m.schedule.alphas_cumprod[0] >= 1) fail('schedule', 'alphas_cumprod[0] must be < 1 (t = 0 in the schedule is already noisy)');
    if (m.context_t >= m.schedule.train_timesteps) fail('context_t', 'context_t must be < train_timesteps');
    if (m.default_steps > m.schedule.train_timesteps) fail('default_steps', 'default_steps must be <= train_timesteps');
    if (m.guidance.supported && m.null_label === undefined) fail('null_label', 'guidance needs a null_label');
    if (m.null_label !== undefined && m.null_label < m.labels.length) {
      fail('null_label', 'null_label must not be one of the real labels');
    }
  });

export type Manifest = z.infer<typeof ManifestSchema>;
export type KvDtype = Manifest['kv_dtype'];
export type Prediction = Manifest['prediction'];

/** A validated manifest plus the absolute path of the ONNX file whose hash was checked. */
export interface LoadedManifest {
  manifest: Manifest;
  dir: string;
  onnxPath: string;
}

/** `dir/manifest.json` parsed as JSON, not yet validated (either format); unreadable or not JSON is ManifestInvalidError. */
export async function readManifestJson(dir: string): Promise<{ manifestPath: string; raw: unknown }> {
  const manifestPath = path.resolve(dir, 'manifest.json');
  try {
    return { manifestPath, raw: JSON.parse(await fs.readFile(manifestPath, 'utf8')) as unknown };
  } catch (cause) {
    throw new ManifestInvalidError(manifestPath, [(cause as Error).message], { cause });
  }
}

/** Validates `dir/manifest.json` and checks the ONNX file's SHA-256 against it. */
export async function loadManifest(dir: string): Promise<LoadedManifest> {
  const { manifestPath, raw } = await readManifestJson(dir);
  const manifest = parseManifest(raw, manifestPath);
  const onnxPath = path.join(path.dirname(manifestPath), manifest.onnx);
  const actual = await sha256File(onnxPath);
  if (actual !== manifest.onnx_sha256) throw new OnnxHashMismatchError(onnxPath, manifest.onnx_sha256, actual);
  return { manifest, dir: path.dirname(manifestPath), onnxPath };
}

/** Validates an already parsed manifest object; `source` only names it in the error. */
export function parseManifest(raw: unknown, source = 'manifest.json'): Manifest {
  const parsed = ManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new ManifestInvalidError(source, issues, { cause: parsed.error });
  }
  return parsed.data;
}

/** Streams the file so a large model is never held in memory just to be hashed. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  } catch (cause) {
    throw new ModelFileMissingError(file, { cause });
  }
  return hash.digest('hex');
}

/** Batch rows of every model call: 2 with classifier-free guidance (conditional, null label), else 1. */
export function batchRows(guided: boolean): 1 | 2 {
  return guided ? 2 : 1;
}

/** Floats in one frame of pixels: C * H * W. */
export function frameFloats(m: Pick<Manifest, 'frame'>): number {
  return m.frame.channels * m.frame.height * m.frame.width;
}

/** Floats of K/V one frame adds to the cache: depth * 2 * B * N * width. */
export function kvFrameFloats(m: Manifest, batch: number): number {
  return m.depth * 2 * batch * m.tokens_per_frame * m.width;
}

/** Shape of the K/V of `frames` frames, in `KV_LAYOUT` order. */
export function kvShape(m: Manifest, frames: number, batch: number): [number, number, number, number, number, number] {
  return [frames, m.depth, 2, batch, m.tokens_per_frame, m.width];
}

/** Bytes one stored frame of K/V takes in the manifest's dtype (payload only, no header). */
export function kvFrameBytes(m: Manifest, batch: number): number {
  return kvFrameFloats(m, batch) * (m.kv_dtype === 'float16' ? 2 : 4);
}

/** Label index fed to the model for the unconditional row, or undefined without guidance. */
export function nullLabel(m: Manifest): number | undefined {
  return m.guidance.supported ? m.null_label : undefined;
}
