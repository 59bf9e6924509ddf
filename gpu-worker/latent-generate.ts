/**
 * The chunk loop of a format-2 (latent, two-cache) model, in memory: what the worker's chunk step
 * will do for such a model, one chunk per task, with the caches in the store.
 *
 *   encode starting frames -> cache write (context noise, t = 0) -> for each chunk:
 *   IDDPM over the respaced schedule, every step sharing the temporal cache and the spatial prefix
 *   cache -> cache write of the chunk -> decode every latent frame to RGB
 *
 * Noise is a function of (seed, chunk, stream): stream 0 is the chunk's x_T, 1 its context noise,
 * 2 + i the noise of respaced step i. `recompute` rebuilds both caches from the stored latents at
 * every step instead (the baseline; equal while no frame has left the window).
 */
import { f16ToF32 } from '../shared/cache/f16.js';
import type { KvData } from '../shared/cache/segment.js';
import type { ManifestV2 } from '../shared/model/manifest-v2.js';
import { iddpmSchedule, iddpmStep, type IddpmSchedule } from '../shared/sampler/iddpm.js';
import { gaussianNoise } from '../shared/sampler/noise.js';
import type { LatentModelSession } from './latent-session.js';

export interface LatentVideo {
  frames: Float32Array; // [count, 3, H, W]
  latents: Float32Array; // [count, C, h, w]: what a lost cache segment is rebuilt from, losslessly
  count: number;
}

export interface GenerateOptions {
  seed: number;
  steps?: number;
  recompute?: boolean;
}

/** Which frames of the last write fill the spatial prefix cache (the official rule). */
export function prefixFrameIndices(written: number, prefixFrames: number): number[] {
  if (written >= prefixFrames) return Array.from({ length: prefixFrames }, (_, i) => written - prefixFrames + i);
  const rep = Math.floor(prefixFrames / written) + 1;
  return Array.from({ length: prefixFrames }, (_, i) => Math.floor(i / rep));
}

/**
 * Per-frame K/V [depth, 2, rows, N, width] of `frames` frames -> [depth, 2, rows, N, heads, frames,
 * head_dim], as floats (fp16 bits widened exactly).
 */
export function attentionLayout(m: ManifestV2, perFrame: readonly KvData[], rows: number): Float32Array {
  const P = perFrame.length;
  const { depth, tokens_per_frame: N, heads: H, head_dim: hd } = m;
  const out = new Float32Array(depth * 2 * rows * N * H * P * hd);
  const runs = depth * 2 * rows * N * H;     // head_dim runs per frame, in the same order in both layouts
  perFrame.forEach((kv, p) => {
    for (let r = 0; r < runs; r++) {
      const src = kv.subarray(r * hd, (r + 1) * hd);
      const at = (r * P + p) * hd;
      if (src instanceof Uint16Array) f16ToF32(src, out.subarray(at, at + hd));
      else out.set(src, at);
    }
  });
  return out;
}

class Caches {
  temporal: Float32Array[] = []; // newest P_max frames, time order
  prefix: Float32Array[] = []; // the last write's frames (spatial K/V)
}

export async function generateLatentVideo(
  model: LatentModelSession, init: Float32Array, initCount: number, chunks: number, opts: GenerateOptions,
): Promise<LatentVideo> {
  const m = model.manifest;
  const rows = 1;
  const l = m.chunk_frames;
  const sched = iddpmSchedule(m.schedule.alphas_cumprod, opts.steps ?? m.default_steps);
  const frameLatent = m.latent.channels * m.latent.height * m.latent.width;
  const kvFrame = m.depth * 2 * rows * m.tokens_per_frame * m.width;
  const context = (z: Float32Array, chunk: number) => contextLatents(m, sched, z, opts.seed, chunk);

  async function write(caches: Caches, z: Float32Array, start: number): Promise<void> {
    const n = z.length / frameLatent;
    const { kv, kvPrefix } = await model.run({
      x: z, t: new Float32Array(n).fill(m.context_embed_t), clean: new Float32Array(n).fill(1), pos: start,
      cache: attentionLayout(m, caches.temporal, rows), cacheFrames: caches.temporal.length,
      prefix: prefixInput(caches), rows, frames: n,
    }, 'kv');
    for (let f = 0; f < n; f++) caches.temporal.push(kv!.slice(f * kvFrame, (f + 1) * kvFrame));
    caches.temporal.splice(0, Math.max(0, caches.temporal.length - m.p_max));
    if (kvPrefix) caches.prefix = Array.from({ length: n }, (_, f) => kvPrefix.slice(f * kvFrame, (f + 1) * kvFrame));
  }
  const prefixInput = (caches: Caches) => {
    const T = m.prefix_cache?.frames;
    if (!T || caches.prefix.length === 0) return undefined;
    return attentionLayout(m, prefixFrameIndices(caches.prefix.length, T).map((i) => caches.prefix[i]), rows);
  };

  // Setup: the starting frames' latents, and what conditioning sees of them
  const latents: Float32Array[] = [await model.encode(init, initCount)];
  const contexts: { z: Float32Array; start: number }[] = [{ z: context(latents[0], -1), start: 0 }];
  const caches = new Caches();
  if (!opts.recompute) await write(caches, contexts[0].z, 0);
  let made = initCount;
  for (let k = 0; k < chunks; k++) {
    let x = gaussianNoise(l * frameLatent, { seed: opts.seed, chunk: k, stream: 0 });
    for (let i = sched.timesteps.length - 1; i >= 0; i--) {
      let c = caches;
      if (opts.recompute) {                      // rebuild both caches from the window's latents, piece by piece
        c = new Caches();
        const first = Math.max(0, made - m.p_max);
        for (const piece of contexts) {
          const n = piece.z.length / frameLatent;
          if (piece.start + n <= first) continue;
          const skip = Math.max(0, first - piece.start);
          await write(c, piece.z.subarray(skip * frameLatent), piece.start + skip);
        }
      }
      const { prediction } = await model.run({
        x, t: new Float32Array(l).fill(sched.timesteps[i]), clean: new Float32Array(l), pos: made,
        cache: attentionLayout(m, c.temporal, rows), cacheFrames: c.temporal.length, prefix: prefixInput(c), rows, frames: l,
      }, 'prediction');
      x = iddpmStep(x, prediction!, sched, i, gaussianNoise(x.length, { seed: opts.seed, chunk: k, stream: 2 + i }), frameLatent);
    }
    latents.push(x);
    contexts.push({ z: context(x, k), start: made });
    if (!opts.recompute) await write(caches, contexts.at(-1)!.z, made);
    made += l;
  }
  const all = concat(latents);
  return { latents: all, frames: await model.decode(all, made), count: made };
}

/**
 * Conditioning latents `z` as the cache write sees them: noised at context_t with the noise of
 * (seed, chunk, stream 1), chunk -1 for the starting frames; `z` itself when context_t is 0.
 */
export function contextLatents(m: ManifestV2, sched: IddpmSchedule, z: Float32Array, seed: number, chunk: number): Float32Array {
  if (m.context_t === 0) return z;
  const [sa, s1a] = contextCoefs(m, sched);
  const out = gaussianNoise(z.length, { seed, chunk, stream: 1 });
  for (let i = 0; i < z.length; i++) out[i] = Math.fround(Math.fround(sa * z[i]) + Math.fround(s1a * out[i]));
  return out;
}

/** sqrt(a), sqrt(1 - a) of the context noise: the respaced table's entry when context_t is kept, as the official inference noises. */
function contextCoefs(m: ManifestV2, s: IddpmSchedule): [number, number] {
  const i = s.timesteps.indexOf(m.context_t);
  const a = i >= 0 ? s.alphasCumprod[i] : Math.fround(m.schedule.alphas_cumprod[m.context_t]);
  return [Math.fround(Math.sqrt(a)), Math.fround(Math.sqrt(Math.fround(1 - a)))];
}

function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
