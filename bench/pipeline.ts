/**
 * `npm run bench`: 80 frames after 4 given ones on the shipped model, generated
 *   (a) with the cache, through the real pipeline (the worker's chunk step on the embedded store
 *       and queue), once as it runs by default and once reading every chunk's cache from the store
 *       ("cold"), and
 *   (b) by the no-cache baseline: same graph and sampler, every conditioning frame recomputed at
 *       every denoising step (as OS-Ext does), no storage at all, chunk k right after (a)'s chunk k.
 * (a)+(b) run BENCH_REPEATS times (default 3); totals are means over the runs, per-chunk times medians.
 * Prints the figures and writes bench/results/latest.json.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { localAdapters } from '../gpu-worker/adapters.js';
import { DEFAULT_API_CONFIG } from '../shared/api/config.js';
import { createVideo } from '../shared/api/videos.js';
import { DEFAULT_MODEL_DIR } from '../gpu-worker/defaults.js';
import { framesOfChunk } from '../gpu-worker/job-plan.js';
import { ModelSession } from '../gpu-worker/model-session.js';
import { ChunkWorker } from '../gpu-worker/worker.js';
import { PREFIX_CHUNK } from '../shared/cache/segment.js';
import { readJob } from '../shared/jobs/job-store.js';
import { pngsToFrames } from '../shared/media/png.js';
import { frameFloats } from '../shared/model/manifest.js';
import { contextFrames } from '../shared/sampler/context.js';
import { denoise } from '../shared/sampler/ddim.js';
import { gaussianNoise } from '../shared/sampler/noise.js';
import { ddimSchedule } from '../shared/sampler/schedule.js';
import { CountingStore } from './counting-store.js';

process.env.LOG_LEVEL ??= 'warn';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FRAMES = Number(process.env.BENCH_FRAMES ?? 80);
// Paired runs: a shared 2-vCPU host drifts by +-20% from one chunk to the next and by more between
// minutes, so totals are averaged over the runs and per-chunk times are medians.
const REPEATS = Math.max(1, Number(process.env.BENCH_REPEATS ?? 3));
const GIVEN = 4;
const TENANT = 'bench';
const seconds = (start: number) => (performance.now() - start) / 1000;
const round = (v: number, d = 3) => Math.round(v * 10 ** d) / 10 ** d;

const model = await ModelSession.open(process.env.MODEL_DIR ?? DEFAULT_MODEL_DIR);
const m = model.manifest;
const steps = m.default_steps;
const guidance = 2;
const label = 1;
const SEED = 3;
const assets = path.join(ROOT, 'scripts', 'assets');
const initPngs = await Promise.all([0, 1, 2, 3].map((i) => readFile(path.join(assets, `demo-init-${i}.png`))));

// Warm-up: the first run of a graph pays for allocation and kernel selection.
await model.step({ x: new Float32Array(2 * m.chunk_frames * frameFloats(m)), t: new Float32Array(2 * m.chunk_frames).fill(500),
  labels: [label, m.null_label ?? 0], pos: 0, cache: new Float32Array(0), cacheFrames: 0, rows: 2, frames: m.chunk_frames });

// (a) Cached, through the pipeline: the worker's own chunk step on the embedded store and queue.
// `memo`: the worker keeps each job's cache window for its next chunk (the default); without it every chunk
// reads its cache from the store, as when each chunk lands on another worker.
// (b) Baseline: the same chunk by recomputing the window of clean conditioning frames at every
// step. With `paired`, chunk k of the baseline runs right after chunk k of the pipeline, so a drift
// in machine speed (shared hosts drift by tens of percent within a minute) hits both sides alike.
const l = m.chunk_frames;
const shape = { chunkFrames: l, framesTotal: FRAMES }; // how the pipeline cuts the video
const ff = frameFloats(m);
const schedule = ddimSchedule(m.schedule.alphas_cumprod, steps);

/** `history`: the conditioning frames so far, as the cache-write pass sees them (contextFrames). */
async function baselineChunk(k: number, history: Float32Array): Promise<Float32Array> {
  const total = history.length / ff;
  const ctx = Math.min(total, m.p_max);
  const context = history.subarray((total - ctx) * ff);
  const n = framesOfChunk(shape, k); // the last chunk makes only the frames kept, as the pipeline does
  const F = ctx + n;
  const clean = await denoise({
    noise: gaussianNoise(l * ff, { seed: SEED, chunk: k }).subarray(0, n * ff), steps: schedule, prediction: m.prediction, range: m.frame.range, guidance,
    model: async (x, t, rows) => {
      const xin = new Float32Array(rows * F * ff);
      const tin = new Float32Array(rows * F);
      for (let r = 0; r < rows; r++) {
        xin.set(context, r * F * ff);
        tin.fill(m.context_t, r * F, r * F + ctx);
        xin.set(x.subarray(r * n * ff, (r + 1) * n * ff), (r * F + ctx) * ff);
        tin.fill(t, r * F + ctx, (r + 1) * F);
      }
      const { prediction } = await model.step({ x: xin, t: tin, labels: [label, m.null_label ?? 0], pos: total - ctx,
        cache: new Float32Array(0), cacheFrames: 0, rows, frames: F }, 'prediction');
      const out = new Float32Array(rows * n * ff);
      for (let r = 0; r < rows; r++) out.set(prediction.subarray((r * F + ctx) * ff, (r + 1) * F * ff), r * n * ff);
      return out;
    },
  });
  const next = new Float32Array(history.length + clean.length);
  next.set(history);
  next.set(contextFrames(clean, m, { seed: SEED, chunk: k }), history.length);
  return next;
}

async function run(opts: { memo: boolean; paired: boolean }) {
  const adapters = localAdapters(path.join(os.tmpdir(), `ca2vdm-bench-${process.pid}-${opts.memo}-${Date.now()}`));
  const store = new CountingStore(adapters.store);
  // Submitted as the API does it (validation, starting frames, job.json, chunk 0 queued).
  const api = { store, chunkQueue: adapters.chunkQueue, manifest: m, config: { ...DEFAULT_API_CONFIG, maxFrames: Math.max(FRAMES, DEFAULT_API_CONFIG.maxFrames) } };
  const { job } = await createVideo(api, { tenant: TENANT, baseUrl: 'http://127.0.0.1' }, {
    body: { frames: FRAMES, steps, guidance, label: m.labels[label], seed: SEED, init_frames: initPngs.map((b) => b.toString('base64')) },
  });
  const taskSeconds: number[] = [], bytesWritten: number[] = [], bytesRead: number[] = [], baselineSeconds: number[] = [];
  let history = contextFrames(pngsToFrames(initPngs, { ...m.frame }), m, { seed: SEED, chunk: PREFIX_CHUNK });
  let modelSeconds = 0;
  // One task at a time, exactly as ChunkWorker.run() would take them (receive, chunk step, delete).
  const worker = new ChunkWorker({ ...adapters, store, model, waitSec: 0.2, windowMemoBytes: opts.memo ? undefined : 0 });
  for (let k = 0; ; k++) {
    const before = model.modelSeconds;
    const started = performance.now();
    const outcome = await worker.processNext();
    taskSeconds.push(round(seconds(started)));
    modelSeconds += model.modelSeconds - before;
    const io = store.take();
    bytesWritten.push(io.written);
    bytesRead.push(io.read);
    if (opts.paired) {
      const b = performance.now();
      history = await baselineChunk(k, history);
      baselineSeconds.push(round(seconds(b)));
    }
    if (outcome === 'finalized' || outcome === 'failed' || outcome === undefined) break;
  }
  await worker.close();
  const result = (await readJob(adapters.store, TENANT, job.id))!.job;
  if (result.status !== 'succeeded') throw new Error(`cached run ended ${result.status}: ${JSON.stringify(result.error)}`);
  // Per chunk: the chunk step up to its job update (as recorded in the job); finalize apart.
  const chunkSeconds = result.metrics.chunk_seconds;
  const total = taskSeconds.reduce((a, b) => a + b, 0);
  return { total, modelSeconds, chunkSeconds, finalize: taskSeconds.at(-1)! - chunkSeconds.at(-1)!, bytesWritten, bytesRead,
    baselineSeconds, baselineTotal: baselineSeconds.reduce((a, b) => a + b, 0) };
}

// Paired runs (cached chunk k, then baseline chunk k), BENCH_REPEATS of them; then one cold run.
type Run = Awaited<ReturnType<typeof run>>;
const runs: Run[] = [];
for (let i = 0; i < REPEATS; i++) runs.push(await run({ memo: true, paired: true }));
const coldRun = await run({ memo: false, paired: false });
const sum = (v: number[]) => v.reduce((a, b) => a + b, 0);
const mean = (v: number[]) => sum(v) / v.length;
const median = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1];
const perChunkMedian = (pick: (r: Run) => number[]) => pick(runs[0]).map((_, k) => median(runs.map((r) => pick(r)[k])));
const cachedChunkMedians = perChunkMedian((r) => r.chunkSeconds);
const baselineChunkMedians = perChunkMedian((r) => r.baselineSeconds);
// Totals are means over the runs, so the speedup is the ratio of all baseline time to all cached time.
const cachedSeconds = mean(runs.map((r) => r.total));
const baselineSeconds = mean(runs.map((r) => r.baselineTotal));
const overhead = (r: Run) => (r.total - r.modelSeconds) / r.total;
const lastFull = Math.max(1, Math.floor(FRAMES / l) - 1);

const cpu = os.cpus();
const report = {
  frames: FRAMES,
  given_frames: GIVEN,
  chunk_frames: l,
  p_max: m.p_max,
  steps,
  guidance,
  model: m.name,
  provider: model.provider,
  runs: runs.length,
  cached_seconds: round(cachedSeconds),
  baseline_seconds: round(baselineSeconds),
  speedup: round(baselineSeconds / cachedSeconds, 2),
  speedup_each_run: runs.map((r) => round(r.baselineTotal / r.total, 2)),
  cached_seconds_each_run: runs.map((r) => round(r.total)),
  baseline_seconds_each_run: runs.map((r) => round(r.baselineTotal)),
  cached_cold_seconds: round(coldRun.total),
  // Per chunk: medians over the runs (a shared host drifts by +-20% from one chunk to the next).
  cached_chunk_seconds: cachedChunkMedians,
  baseline_chunk_seconds: baselineChunkMedians,
  cached_chunk_seconds_each_run: runs.map((r) => r.chunkSeconds),
  baseline_chunk_seconds_each_run: runs.map((r) => r.baselineSeconds),
  cached_cold_chunk_seconds: coldRun.chunkSeconds,
  finalize_seconds: round(median(runs.map((r) => r.finalize))),
  // Flatness: the last chunk of full length (a shorter last chunk makes fewer frames) against the second.
  last_over_second_chunk: round(cachedChunkMedians[lastFull] / cachedChunkMedians[1], 2),
  last_over_second_chunk_each_run: runs.map((r) => round(r.chunkSeconds[lastFull] / r.chunkSeconds[1], 2)),
  last_chunk_frames: framesOfChunk(shape, Math.ceil(FRAMES / l) - 1),
  model_seconds: round(mean(runs.map((r) => r.modelSeconds))),
  overhead_fraction: round(sum(runs.map((r) => r.total - r.modelSeconds)) / sum(runs.map((r) => r.total)), 4),
  overhead_fraction_each_run: runs.map((r) => round(overhead(r), 4)),
  overhead_fraction_cold: round(overhead(coldRun), 4),
  bytes_written_per_chunk: runs[0].bytesWritten,
  bytes_read_per_chunk: runs[0].bytesRead,
  bytes_read_per_chunk_cold: coldRun.bytesRead,
  machine: `${cpu[0]?.model ?? 'unknown cpu'} x${cpu.length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.arch()}, node ${process.version}`,
  date: new Date().toISOString(),
};
await mkdir(path.join(ROOT, 'bench', 'results'), { recursive: true });
await writeFile(path.join(ROOT, 'bench', 'results', 'latest.json'), JSON.stringify(report, null, 2) + '\n');
await model.release();
console.log(JSON.stringify(report, null, 2));
console.log(`\ncached ${report.cached_seconds} s vs baseline ${report.baseline_seconds} s: ${report.speedup}x ` +
  `(mean of ${runs.length} paired runs: ${report.speedup_each_run.join(', ')}); ` +
  `pipeline overhead ${(report.overhead_fraction * 100).toFixed(1)}% of the cached runs ` +
  `(${(report.overhead_fraction_cold * 100).toFixed(1)}% reading every cache from the store); ` +
  `last/second chunk ${report.last_over_second_chunk} (medians of ${runs.length} runs); written to bench/results/latest.json`);
