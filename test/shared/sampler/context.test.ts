import { describe, expect, it } from 'vitest';
import { CONTEXT_NOISE_STREAM, contextFrames } from '../../../shared/sampler/context.js';
import { gaussianNoise } from '../../../shared/sampler/noise.js';
import { cosineAlphasCumprod } from './helpers.js';

const schedule = { type: 'cosine', train_timesteps: 1000, alphas_cumprod: cosineAlphasCumprod(1000) };
const frames = Float32Array.from({ length: 2 * 3 * 8 * 8 }, (_, i) => Math.sin(i) * 0.9);

describe('contextFrames', () => {
  it('returns the frames themselves when the model serves clean context (context_t 0)', () => {
    expect(contextFrames(frames, { context_t: 0, schedule }, { seed: 5, chunk: 2 })).toBe(frames);
  });

  it('noises at context_t with the key\'s context stream: sqrt(a) x + sqrt(1 - a) z', () => {
    const out = contextFrames(frames, { context_t: 150, schedule }, { seed: 5, chunk: 2 });
    const z = gaussianNoise(frames.length, { seed: 5, chunk: 2, stream: CONTEXT_NOISE_STREAM });
    const a = schedule.alphas_cumprod[150];
    for (const i of [0, 1, 100, frames.length - 1]) {
      expect(out[i]).toBeCloseTo(Math.sqrt(a) * frames[i] + Math.sqrt(1 - a) * z[i], 6);
    }
    expect(frames[0]).toBe(Math.fround(Math.sin(0) * 0.9)); // the input is left alone
  });

  it('is a pure function of (frames, seed, chunk), apart from the chunk\'s x_T noise', () => {
    const m = { context_t: 150, schedule };
    const a = contextFrames(frames, m, { seed: 5, chunk: 2 });
    expect(contextFrames(frames, m, { seed: 5, chunk: 2 })).toEqual(a);
    expect(contextFrames(frames, m, { seed: 5, chunk: 3 })).not.toEqual(a);
    expect(contextFrames(frames, m, { seed: 5, chunk: -1 })).not.toEqual(a); // the starting frames' own stream
    // Not the x_T of the same chunk: the two draws are independent.
    const xT = gaussianNoise(frames.length, { seed: 5, chunk: 2 });
    const z = a.map((v, i) => (v - Math.sqrt(schedule.alphas_cumprod[150]) * frames[i]) / Math.sqrt(1 - schedule.alphas_cumprod[150]));
    expect(Math.abs(z[0] - xT[0]) + Math.abs(z[1] - xT[1])).toBeGreaterThan(1e-3);
  });
});
