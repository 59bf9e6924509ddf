import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeMp4 } from '../../shared/media/mp4.js';
import { generateLatentVideo, prefixFrameIndices } from '../../gpu-worker/latent-generate.js';
import { LatentModelSession } from '../../gpu-worker/latent-session.js';

// The committed tiny random-weight official model: 64x64 frames, 8x8x4 latents, chunks of 2, P_max 5.
const TINY = fileURLToPath(new URL('../../model/artifacts/official-tiny-random/', import.meta.url));

let model: LatentModelSession;
beforeAll(async () => { model = await LatentModelSession.open(TINY, 'cpu', 1); });
afterAll(() => model.release());

function startingFrame(shift = 0): Float32Array {
  const m = model.manifest;
  const px = m.frame.height * m.frame.width;
  return Float32Array.from({ length: 3 * px }, (_, i) => Math.sin((i % px) / 37 + Math.floor(i / px) + shift) * 0.8);
}

describe('a format-2 model chunk by chunk (latents, both caches, IDDPM)', () => {
  it('keeps the official prefix-cache rule', () => {
    expect(prefixFrameIndices(8, 3)).toEqual([5, 6, 7]);
    expect(prefixFrameIndices(1, 3)).toEqual([0, 0, 0]);
    expect(prefixFrameIndices(2, 3)).toEqual([0, 0, 1]);
  });

  it('makes decoded frames of the right count and size, deterministically, into an MP4', async () => {
    const m = model.manifest;
    const a = await generateLatentVideo(model, startingFrame(), 1, 3, { seed: 7, steps: 4 });
    expect(a.count).toBe(1 + 3 * m.chunk_frames);
    expect(a.frames.length).toBe(a.count * 3 * m.frame.height * m.frame.width);
    expect(a.latents.length).toBe(a.count * m.latent.channels * m.latent.height * m.latent.width);
    expect(a.frames.every(Number.isFinite)).toBe(true);
    const b = await generateLatentVideo(model, startingFrame(), 1, 3, { seed: 7, steps: 4 });
    expect(b.latents).toEqual(a.latents);
    const mp4 = await encodeMp4(a.frames, { channels: 3, height: m.frame.height, width: m.frame.width, range: [-1, 1] }, { scale: 1 });
    expect(mp4.subarray(4, 8).toString('latin1')).toBe('ftyp');
  });

  it('shares the caches across steps with the same result as rebuilding them at every step', async () => {
    // 1 + 2 + 2 = 5 = P_max frames before the last chunk: no frame has left the window yet.
    const cached = await generateLatentVideo(model, startingFrame(), 1, 3, { seed: 3, steps: 3 });
    const rebuilt = await generateLatentVideo(model, startingFrame(), 1, 3, { seed: 3, steps: 3, recompute: true });
    let worst = 0;
    cached.latents.forEach((v, i) => { worst = Math.max(worst, Math.abs(v - rebuilt.latents[i])); });
    expect(worst).toBeLessThanOrEqual(1e-4);
    // ...and the chunks depend on what the caches carry: another starting frame, other chunks.
    const other = await generateLatentVideo(model, startingFrame(1), 1, 3, { seed: 3, steps: 3 });
    const start = model.manifest.latent.channels * model.manifest.latent.height * model.manifest.latent.width;
    let moved = 0;
    for (let i = start; i < cached.latents.length; i++) moved = Math.max(moved, Math.abs(other.latents[i] - cached.latents[i]));
    expect(moved).toBeGreaterThan(1e-3);
  });
});
