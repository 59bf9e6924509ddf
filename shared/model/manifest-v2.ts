import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { ManifestInvalidError, OnnxHashMismatchError } from './errors.js';
import { checkSchedule, KV_CACHE_GEOMETRY, readManifestJson, sha256File } from './manifest.js';

const posInt = z.int().positive();
const name = z.string().min(1);
const fileName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/);
const sha = z.string().regex(/^[0-9a-f]{64}$/, 'lower-case hex SHA-256');

/**
 * Format 2 of model/artifacts/NAME/manifest.json: a latent-space model with two caches, as
 * model/official/convert.py writes it for the official causal STDiT2 (model/official/export.py
 * documents every input and output). Format 1 (shared/model/manifest.ts) is unchanged.
 */
export const ManifestV2Schema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/),
    format: z.literal(2),
    onnx: fileName,
    onnx_sha256: sha,
    frame: z.object({ channels: z.literal(3), height: posInt, width: posInt, range: z.tuple([z.number(), z.number()]) }),
    /** The step works on VAE latents: encoder.onnx takes RGB starting frames, decoder.onnx gives each chunk's frames. */
    latent: z.object({
      channels: posInt, height: posInt, width: posInt, scale: z.number().positive(),
      encoder: fileName, encoder_sha256: sha, decoder: fileName, decoder_sha256: sha,
    }),
    chunk_frames: posInt,
    trained_chunk_frames: posInt,
    ...KV_CACHE_GEOMETRY,
    /** cyclic: cached keys carry their position; rope: cached un-rotated, the graph takes each slot's window position. */
    positions: z.enum(['cyclic', 'rope']),
    /** The spatial prefix cache: `frames` frames of the last written chunk's spatial K/V. */
    prefix_cache: z.object({ frames: posInt }).optional(),
    schedule: z.object({ type: z.string().min(1), train_timesteps: posInt, alphas_cumprod: z.array(z.number().gt(0).lte(1)).min(1) }),
    prediction: z.enum(['eps', 'v', 'x0']),
    variance: z.enum(['learned_range', 'fixed']),
    sampler: z.enum(['iddpm', 'ddim']),
    default_steps: posInt,
    labels: z.array(z.string()).max(0),
    guidance: z.object({ supported: z.literal(false), default: z.number() }),
    /** Conditioning latents are noised at context_t before the cache write, which embeds them at context_embed_t. */
    context_t: z.int().nonnegative(),
    context_embed_t: z.int().nonnegative(),
    /** Cross-attention: the step takes a conditioning embedding; without prompts, the learned null one in `null`. */
    conditioning: z.object({ tokens: posInt, channels: posInt, null: fileName, null_sha256: sha }).optional(),
    io: z.object({
      inputs: z.object({
        x: name, t: name, clean: name, pos: name, y: name.optional(),
        cache: z.array(name).min(2), prefix: z.array(name).min(2).optional(), cache_pos: name.optional(),
      }),
      outputs: z.object({ prediction: name, kv: name, kv_prefix: name.optional() }),
    }),
  })
  .superRefine((m, ctx) => {
    const fail = (p: string, message: string) => ctx.addIssue({ code: 'custom', path: [p], message });
    if (m.width !== m.heads * m.head_dim) fail('width', 'width must equal heads * head_dim');
    if (m.io.inputs.cache.length !== 2 * m.depth) fail('io', 'io.inputs.cache must name 2 * depth inputs');
    if (m.l_train < m.p_max + m.chunk_frames) fail('l_train', 'l_train must be >= p_max + chunk_frames');
    if (m.chunk_frames > m.trained_chunk_frames) fail('chunk_frames', 'chunk_frames must be <= trained_chunk_frames');
    const withPrefix = m.prefix_cache !== undefined;
    if (withPrefix !== (m.io.inputs.prefix !== undefined) || withPrefix !== (m.io.outputs.kv_prefix !== undefined)) {
      fail('prefix_cache', 'prefix_cache, io.inputs.prefix and io.outputs.kv_prefix go together');
    }
    if (m.io.inputs.prefix && m.io.inputs.prefix.length !== 2 * m.depth) fail('io', 'io.inputs.prefix must name 2 * depth inputs');
    if ((m.positions === 'rope') !== (m.io.inputs.cache_pos !== undefined)) fail('positions', 'rope positions need io.inputs.cache_pos (and only they)');
    if ((m.conditioning !== undefined) !== (m.io.inputs.y !== undefined)) fail('conditioning', 'conditioning and io.inputs.y go together');
    checkSchedule(m.schedule, fail);
    if (m.context_t >= m.schedule.train_timesteps) fail('context_t', 'context_t must be < train_timesteps');
    if (m.default_steps > m.schedule.train_timesteps) fail('default_steps', 'default_steps must be <= train_timesteps');
    if (m.frame.height !== 8 * m.latent.height || m.frame.width !== 8 * m.latent.width) fail('latent', 'latents must be 1/8 of the frame (the SD-VAE)');
  });

export type ManifestV2 = z.infer<typeof ManifestV2Schema>;

/** A validated format-2 manifest and the absolute paths of the graphs whose hashes were checked. */
export interface LoadedManifestV2 {
  manifest: ManifestV2;
  dir: string;
  files: { step: string; encoder: string; decoder: string; nullEmbedding?: string };
}

/** Validates `dir/manifest.json` as format 2 and checks every file's SHA-256 against it. */
export async function loadManifestV2(dir: string): Promise<LoadedManifestV2> {
  const { manifestPath, raw } = await readManifestJson(dir);
  const parsed = ManifestV2Schema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new ManifestInvalidError(manifestPath, issues, { cause: parsed.error });
  }
  const m = parsed.data;
  const base = path.dirname(manifestPath);
  const files = {
    step: path.join(base, m.onnx),
    encoder: path.join(base, m.latent.encoder),
    decoder: path.join(base, m.latent.decoder),
    ...(m.conditioning ? { nullEmbedding: path.join(base, m.conditioning.null) } : {}),
  };
  const expected: [string, string][] = [
    [files.step, m.onnx_sha256], [files.encoder, m.latent.encoder_sha256], [files.decoder, m.latent.decoder_sha256],
  ];
  if (m.conditioning) expected.push([path.join(base, m.conditioning.null), m.conditioning.null_sha256]);
  for (const [file, want] of expected) {
    const actual = await sha256File(file);
    if (actual !== want) throw new OnnxHashMismatchError(file, want, actual);
  }
  return { manifest: m, dir: base, files };
}

/** The manifest's `format` without validating the rest: which loader a folder needs. */
export async function manifestFormat(dir: string): Promise<number | undefined> {
  try {
    const raw = JSON.parse(await fs.readFile(path.resolve(dir, 'manifest.json'), 'utf8')) as { format?: unknown };
    return typeof raw.format === 'number' ? raw.format : undefined;
  } catch {
    return undefined;
  }
}

/** Bytes of one frame of one cache (temporal or spatial prefix) in a segment: depth * 2 * rows * tokens * width. */
export function kvFrameBytesV2(m: ManifestV2, rows: number): number {
  return m.depth * 2 * rows * m.tokens_per_frame * m.width * (m.kv_dtype === 'float16' ? 2 : 4);
}
