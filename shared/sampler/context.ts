import type { Manifest } from '../model/manifest.js';
import { gaussianNoise, type NoiseKey } from './noise.js';

/** Noise stream of the context noise (stream 0 of a chunk is its x_T). */
export const CONTEXT_NOISE_STREAM = 1;

/**
 * Conditioning frames as the cache-write pass sees them. With the manifest's `context_t` > 0 each
 * frame is noised at that timestep, x = sqrt(a) frames + sqrt(1 - a) z with a = alphas_cumprod[context_t]
 * and z the key's context stream (the starting frames use chunk -1), and the pass embeds them at
 * t = context_t: a model trained with such noise trusts its own slightly wrong history less, which
 * holds back drift over many chunks. With 0 the frames are returned as they are (t = 0).
 * A pure function of (frames, seed, chunk): a retried chunk writes the same K/V.
 */
export function contextFrames(
  frames: Float32Array,
  m: Pick<Manifest, 'context_t' | 'schedule'>,
  key: Omit<NoiseKey, 'stream'>,
): Float32Array {
  if (m.context_t === 0) return frames;
  const a = m.schedule.alphas_cumprod[m.context_t];
  const sa = Math.sqrt(a);
  const s1a = Math.sqrt(1 - a);
  const out = gaussianNoise(frames.length, { ...key, stream: CONTEXT_NOISE_STREAM });
  for (let i = 0; i < out.length; i++) out[i] = sa * frames[i] + s1a * out[i];
  return out;
}
