// Times denoising calls of a format-2 step graph with onnxruntime-node (the worker's runtime) on
// this CPU: one chunk of noisy latents after a full window (P_max cached frames, full prefix cache).
// usage: node model/official/time_step.mjs model/artifacts/<name> [runs=1] [threads]
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';

const [dir, runsArg = '1', threadsArg] = process.argv.slice(2);
const m = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
const { x, t, clean, pos, y, cache, prefix, cache_pos: cachePos } = m.io.inputs;
const B = 1;
const F = m.chunk_frames;
const P = m.p_max;
const rand = (n) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
const feeds = {
  [x]: new ort.Tensor('float32', rand(B * F * m.latent.channels * m.latent.height * m.latent.width), [B, F, m.latent.channels, m.latent.height, m.latent.width]),
  [t]: new ort.Tensor('float32', new Float32Array(B * F).fill(500), [B, F]),
  [clean]: new ort.Tensor('float32', new Float32Array(B * F), [B, F]),
  [pos]: new ort.Tensor('int64', BigInt64Array.from([BigInt(P + 1)]), [1]),
};
const kvDims = (frames) => [B, m.tokens_per_frame, m.heads, frames, m.head_dim];
const kvSize = (frames) => kvDims(frames).reduce((a, b) => a * b, 1);
for (const name of cache) feeds[name] = new ort.Tensor('float32', rand(kvSize(P)), kvDims(P));
for (const name of prefix ?? []) feeds[name] = new ort.Tensor('float32', rand(kvSize(m.prefix_cache.frames)), kvDims(m.prefix_cache.frames));
if (y) feeds[y] = new ort.Tensor('float32', rand(B * m.conditioning.tokens * m.conditioning.channels), [B, m.conditioning.tokens, m.conditioning.channels]);
if (cachePos) feeds[cachePos] = new ort.Tensor('int64', BigInt64Array.from({ length: P }, (_, i) => BigInt(i)), [P]);

let t0 = performance.now();
const opts = threadsArg ? { intraOpNumThreads: Number(threadsArg) } : {};
const session = await ort.InferenceSession.create(path.join(dir, m.onnx), opts);
const loadS = (performance.now() - t0) / 1000;
const times = [];
for (let i = 0; i < Number(runsArg); i++) {
  t0 = performance.now();
  await session.run(feeds, [m.io.outputs.prediction]);
  times.push((performance.now() - t0) / 1000);
}
console.log(JSON.stringify({ model: m.name, frames: F, cached_frames: P, prefix_frames: m.prefix_cache?.frames ?? 0, load_s: loadS, step_s: times }));
