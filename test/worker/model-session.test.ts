import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kvFloats, ModelSession, type StepInput } from '../../gpu-worker/model-session.js';
import { assembleAttentionCache, planCacheRead } from '../../shared/cache/assemble.js';
import { frameFloats } from '../../shared/model/manifest.js';
import { MODEL_DIR } from './fixtures.js';

let model: ModelSession;
beforeAll(async () => { model = await ModelSession.open(MODEL_DIR); });
afterAll(async () => { await model.release(); });

/** Deterministic values in [-1, 1). */
function pseudoRandom(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** Frames [from, to) of every row of x ([rows, F, ...frame]). */
function frames(x: Float32Array, rows: number, F: number, from: number, to: number, per: number): Float32Array {
  const out = new Float32Array(rows * (to - from) * per);
  for (let r = 0; r < rows; r++) out.set(x.subarray((r * F + from) * per, (r * F + to) * per), r * (to - from) * per);
  return out;
}

const maxAbsDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe('the step graph as the worker calls it', () => {
  it('refuses a window in another dtype than the graph takes (manifest cache_dtype), before running', async () => {
    const m = model.manifest;
    expect(m.cache_dtype).toBe('float32'); // the shipped toy graph takes its cache in float32
    const P = 2, perFrame = m.depth * 2 * m.tokens_per_frame * m.width;
    const input: StepInput = { x: new Float32Array(m.chunk_frames * frameFloats(m)), t: new Float32Array(m.chunk_frames), labels: [0], pos: P,
      cache: new Uint16Array(P * perFrame), cacheFrames: P, rows: 1, frames: m.chunk_frames };
    await expect(model.step(input, 'prediction')).rejects.toThrow(/window is float16, the graph's cache inputs are float32/);
  });

  it('a cached call equals recomputing the conditioning frames (cache fed as per-layer views)', async () => {
    const m = model.manifest;
    const rows = 2, P = 8, l = m.chunk_frames, F = P + l;
    const ff = frameFloats(m);
    const x = pseudoRandom(rows * F * ff, 7);
    const t = new Float32Array(rows * F);
    for (let r = 0; r < rows; r++) t.fill(400, r * F + P, (r + 1) * F); // clean prefix, noisy chunk
    const labels = [1, m.null_label ?? 0];
    const call = (over: Partial<StepInput>): StepInput =>
      ({ x, t, labels, pos: 3, cache: new Float32Array(0), cacheFrames: 0, rows, frames: F, ...over });

    // Recompute: every frame in x, no cache.
    const full = await model.step(call({}));
    // Cached: the t = 0 pass on the prefix, its K/V assembled as the worker does, then the chunk alone.
    const { kv } = await model.step(call({ x: frames(x, rows, F, 0, P, ff), t: new Float32Array(rows * P), frames: P }), 'kv');
    const plan = planCacheRead([{ chunk: 0, firstFrame: 3, frames: P }], m.p_max, { startFrame: 3 });
    const { cache } = assembleAttentionCache(plan, [kvFloats(kv)], { runs: m.depth * 2 * rows * m.tokens_per_frame * m.heads, headDim: m.head_dim });
    const part = await model.step(call({
      x: frames(x, rows, F, P, F, ff), t: new Float32Array(rows * l).fill(400), pos: 3 + P, cache, cacheFrames: P, frames: l,
    }));

    // The cache holds K/V as stored (fp16, ~3 significant digits), the recompute keeps them fp32
    // inside the graph: the predictions agree to that rounding (the fp32 maths agree to 1e-4 in
    // model/tests/test_export.py).
    expect(maxAbsDiff(part.prediction, frames(full.prediction, rows, F, P, F, ff))).toBeLessThan(2e-3);
    // kv leaves the graph in the manifest's dtype (fp16). The prefix's K/V are the same fp32 maths
    // either way: equal to within one fp16 step. The chunk's K/V saw the rounded cache: to 2e-3.
    expect(kv).toBeInstanceOf(m.kv_dtype === 'float16' ? Uint16Array : Float32Array);
    const kvFrame = kv.length / P; // frames are kv's outer axis
    const fullKv = kvFloats(full.kv);
    const close = (a: Float32Array, b: Float32Array, abs: number) => a.every((v, i) => Math.abs(v - b[i]) <= abs + Math.abs(b[i]) * 2 ** -10);
    expect(close(kvFloats(kv), fullKv.subarray(0, P * kvFrame), 1e-4)).toBe(true);
    expect(close(kvFloats(part.kv), fullKv.subarray(P * kvFrame), 2e-3)).toBe(true);
  });

  it('rejects a cache whose size does not match its frame count', async () => {
    const m = model.manifest;
    const ff = frameFloats(m);
    const input: StepInput = {
      x: new Float32Array(m.chunk_frames * ff), t: new Float32Array(m.chunk_frames), labels: [0], pos: 4,
      cache: new Float32Array(100), cacheFrames: 4, rows: 1, frames: m.chunk_frames,
    };
    await expect(model.step(input)).rejects.toThrow(/cache holds 100 floats/);
  });
});
