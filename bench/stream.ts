/**
 * `npm run bench:stream`: what live playback costs per chunk. Encodes every chunk of an 80-frame job
 * (the serving model's chunk length and frame size) as its HLS segment, in order, as the worker does,
 * BENCH_REPEATS times (default 3), and reports the median seconds per chunk along the job: it should
 * stay flat (each segment is encoded from its own chunk's frames alone), not grow with the video.
 * The frames are a moving square over a gradient; the encoder's cost depends on the frame count and
 * size, which are the model's. Prints the figures and writes bench/results/stream.json.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_MODEL_DIR } from '../gpu-worker/defaults.js';
import { encodeTsSegment } from '../shared/media/hls.js';
import { parseManifest } from '../shared/model/manifest.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FRAMES = Number(process.env.BENCH_FRAMES ?? 80);
const REPEATS = Math.max(1, Number(process.env.BENCH_REPEATS ?? 3));

const manifestPath = path.join(process.env.MODEL_DIR ?? DEFAULT_MODEL_DIR, 'manifest.json');
const manifest = parseManifest(JSON.parse(await readFile(manifestPath, 'utf8')), manifestPath);
const g = manifest.frame;
const l = manifest.chunk_frames;
const chunks = Math.ceil(FRAMES / l);

/** Frame f of a square moving over a gradient, in the model's value range. */
function frame(f: number): Float32Array {
  const { channels: C, height: H, width: W, range: [lo, hi] } = g;
  const out = new Float32Array(C * H * W);
  for (let c = 0; c < C; c++)
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) {
        const inSquare = (x - f) % W >= 0 && (x - f) % W < 6 && y >= 10 && y < 16;
        out[(c * H + y) * W + x] = inSquare ? hi : lo + ((hi - lo) * ((x + y + c * 7) % W)) / W;
      }
  return out;
}
const video = new Float32Array(FRAMES * g.channels * g.height * g.width);
for (let f = 0; f < FRAMES; f++) video.set(frame(f), f * frame(0).length);

const per = g.channels * g.height * g.width;
const seconds: number[][] = Array.from({ length: chunks }, () => []);
const bytes: number[] = [];
for (let r = 0; r < REPEATS; r++) {
  for (let k = 0; k < chunks; k++) {
    const from = k * l;
    const to = Math.min(FRAMES, from + l);
    const t0 = performance.now();
    const ts = await encodeTsSegment(video.subarray(from * per, to * per), g, { startFrame: from });
    seconds[k].push((performance.now() - t0) / 1000);
    bytes[k] = ts.length;
  }
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const perChunk = seconds.map(median);
const full = perChunk.slice(0, FRAMES % l === 0 ? chunks : chunks - 1); // the last chunk may be shorter
const half = Math.floor(full.length / 2);
const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
const result = {
  model: manifest.name,
  frames: FRAMES,
  chunk_frames: l,
  chunks,
  repeats: REPEATS,
  seconds_per_chunk: perChunk.map((s) => Math.round(s * 1e4) / 1e4),
  mean_seconds_first_half: Math.round(mean(full.slice(0, half)) * 1e4) / 1e4,
  mean_seconds_second_half: Math.round(mean(full.slice(half)) * 1e4) / 1e4,
  /** Second half over first half of the full-length chunks: about 1 when the cost does not grow with the video. */
  growth: Math.round((mean(full.slice(half)) / mean(full.slice(0, half))) * 1000) / 1000,
  bytes_per_segment: Math.round(mean(bytes)),
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version },
  date: new Date().toISOString(),
};
console.log(`HLS segment encoding, ${FRAMES} frames in chunks of ${l} (${manifest.name}), median of ${REPEATS}:`);
console.log(`  per chunk: ${result.seconds_per_chunk.map((s) => s.toFixed(3)).join(' ')} s`);
console.log(`  first half ${result.mean_seconds_first_half} s, second half ${result.mean_seconds_second_half} s, growth ${result.growth}x; ${result.bytes_per_segment} bytes per segment`);
await mkdir(path.join(ROOT, 'bench', 'results'), { recursive: true });
await writeFile(path.join(ROOT, 'bench', 'results', 'stream.json'), JSON.stringify(result, null, 2) + '\n');
