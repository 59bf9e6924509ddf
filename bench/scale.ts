/**
 * `npm run bench:scale`: the cache path at the paper's size. The real worker, store and queue run a
 * job whose step graph is a stand-in (bench/standin-model.ts) with the XL/2 geometry (depth 28,
 * width 1152, 256 tokens per frame, l = 8, P_max = 25, fp16 K/V) that spends the paper's A100 model
 * time per call (52 ms, 100 steps per chunk). Per configuration (store x guidance rows), in its own
 * process so that its peak RSS is its own:
 *   - ramp-up chunks until the window holds P_max frames, then SCALE_WARM chunks on the same
 *     worker ("warm": the window kept in memory), then SCALE_COLD chunks each taken by a fresh
 *     worker ("cold": the window read back from the store);
 *   - overhead = task seconds - model seconds, as a fraction of the model seconds; the gap is the
 *     time from one chunk's last model call to the next chunk's first.
 * Stores: the local folder store, and the S3 adapter against s3rver on loopback in its own process
 * (it shares this machine's CPUs, so its figures inform rather than gate).
 * Environment: SCALE_CONFIGS (default "local:1,local:2,s3:1,s3:2"), SCALE_STEPS (100),
 * SCALE_STEP_MS (52), SCALE_WARM (3), SCALE_COLD (2); SCALE_CACHE_LAYOUT (frames, or layers: the
 * window's layout, bench/standin-model.ts); SCALE_MODEL_BLOCKS=1 (each model call holds the event
 * loop for its model time, as onnxruntime-node's run does); SCALE_CPU_PROF=DIR (a V8 CPU profile per configuration);
 * LOG_LEVEL=debug shows each chunk's phases. Writes bench/results/scale.json.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { S3Client } from '@aws-sdk/client-s3';
import { s3Client } from '../gpu-worker/adapters.js';
import { DEFAULT_MODEL_DIR } from '../gpu-worker/defaults.js';
import { ChunkWorker } from '../gpu-worker/worker.js';
import { DEFAULT_API_CONFIG } from '../shared/api/config.js';
import { createVideo } from '../shared/api/videos.js';
import { LocalQueue } from '../shared/queue/local-queue.js';
import { LocalStore } from '../shared/store/local-store.js';
import type { ObjectStore } from '../shared/store/object-store.js';
import { S3Store } from '../shared/store/s3-store.js';
import { CountingStore } from './counting-store.js';
import { loadBaseManifest, StandInModel, standInManifest, XL2 } from './standin-model.js';

process.env.LOG_LEVEL ??= 'warn';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const num = (name: string, def: number) => (process.env[name] ? Number(process.env[name]) : def);
const STEPS = num('SCALE_STEPS', 100);
const STEP_MS = num('SCALE_STEP_MS', 52);
const WARM = Math.max(1, num('SCALE_WARM', 3));
const COLD = Math.max(1, num('SCALE_COLD', 2));
const round = (v: number, d = 4) => Math.round(v * 10 ** d) / 10 ** d;
const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;

interface Config { store: 'local' | 's3-emulator'; rows: 1 | 2 }

interface ChunkFigures { chunk: number; kind: 'ramp' | 'warm' | 'cold'; seconds: number; model: number; written: number; read: number; gap?: number }

/** One configuration, in this process. */
async function runConfig(cfg: Config, s3Port?: number) {
  const base = await loadBaseManifest(process.env.MODEL_DIR ?? DEFAULT_MODEL_DIR);
  const m = standInManifest(base, XL2);
  const model = new StandInModel(m, STEP_MS, process.env.SCALE_MODEL_BLOCKS === '1');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ca2vdm-scale-'));
  let inner: ObjectStore;
  let client: S3Client | undefined;
  if (cfg.store === 's3-emulator') {
    client = s3Client({
      region: 'us-east-1', endpoint: `http://127.0.0.1:${s3Port}`, forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    });
    inner = new S3Store({ client, bucket: 'bench', keyPrefix: `${path.basename(dir)}/` });
  } else {
    inner = new LocalStore({ root: path.join(dir, 'store') });
  }
  const store = new CountingStore(inner);
  const chunkQueue = new LocalQueue({ dir: path.join(dir, 'chunks') });
  const webhookQueue = new LocalQueue({ dir: path.join(dir, 'webhooks') });
  const assets = path.join(ROOT, 'scripts', 'assets');
  const initPngs = await Promise.all([0, 1, 2, 3].map((i) => readFile(path.join(assets, `demo-init-${i}.png`))));
  const l = m.chunk_frames;
  // Chunks until the window is full (P = P_max from then on), then the measured ones, then one
  // more so that no measured chunk is the last (which finalizes instead of writing a segment).
  const ramp = Math.ceil(Math.max(0, m.p_max - initPngs.length) / l);
  const chunks = ramp + WARM + COLD + 1;
  const api = { store, chunkQueue, manifest: m, config: { ...DEFAULT_API_CONFIG, maxSteps: Math.max(STEPS, DEFAULT_API_CONFIG.maxSteps) } };
  await createVideo(api, { tenant: 'bench', baseUrl: 'http://127.0.0.1' }, {
    body: { frames: chunks * l, steps: STEPS, guidance: cfg.rows === 2 ? 2 : 1, label: m.labels[1], seed: 3,
      init_frames: initPngs.map((b) => b.toString('base64')) },
  });

  const figures: ChunkFigures[] = [];
  // Peak RSS in each phase (ramp-up, warm, cold), sampled: where the memory goes, beside the process's peak.
  const peakByKind: Record<string, number> = {};
  let kindNow = 'ramp';
  const sampler = setInterval(() => { peakByKind[kindNow] = Math.max(peakByKind[kindNow] ?? 0, process.memoryUsage.rss()); }, 50);
  const newWorker = () => new ChunkWorker({ store, chunkQueue, webhookQueue, model, waitSec: 0.2 });
  const step = async (worker: ChunkWorker, chunk: number, kind: ChunkFigures['kind']) => {
    kindNow = kind;
    const before = { model: model.modelSeconds, calls: model.calls.length };
    const lastEnd = model.calls.at(-1)?.end;
    const started = performance.now();
    const outcome = await worker.processNext();
    const seconds = (performance.now() - started) / 1000;
    if (outcome !== 'computed') throw new Error(`chunk ${chunk} ended ${outcome}`);
    const io = store.take();
    const first = model.calls[before.calls];
    figures.push({ chunk, kind, seconds, model: model.modelSeconds - before.model, written: io.written, read: io.read,
      gap: kind === 'warm' && lastEnd !== undefined ? (first.start - lastEnd) / 1000 : undefined });
  };
  // The prefix segment and the ramp-up: the window grows to P_max frames.
  let worker = newWorker();
  let k = 0;
  for (; k < ramp; k++) await step(worker, k, 'ramp');
  for (let i = 0; i < WARM; i++, k++) await step(worker, k, 'warm');
  await worker.close();
  // Each cold chunk on a worker that has never seen the job: its window comes from the store.
  for (let i = 0; i < COLD; i++, k++) {
    worker = newWorker();
    await step(worker, k, 'cold');
    await worker.close();
  }
  clearInterval(sampler);
  const peakRss = process.resourceUsage().maxRSS * 1024;
  client?.destroy();
  await rm(dir, { recursive: true, force: true });

  const warm = figures.filter((f) => f.kind === 'warm');
  const cold = figures.filter((f) => f.kind === 'cold');
  const modelPerChunk = mean(warm.map((f) => f.model));
  const frameBytes = m.depth * 2 * cfg.rows * m.tokens_per_frame * m.width * 2;
  return {
    geometry: XL2.name,
    store: cfg.store,
    rows: cfg.rows,
    model_blocks_event_loop: process.env.SCALE_MODEL_BLOCKS === '1',
    model_seconds_per_chunk: round(modelPerChunk, 3),
    warm_overhead_fraction: round(mean(warm.map((f) => (f.seconds - f.model) / f.model))),
    cold_overhead_fraction: round(mean(cold.map((f) => (f.seconds - f.model) / f.model))),
    bytes_written_per_chunk: Math.round(mean(warm.map((f) => f.written))),
    bytes_read_cold: Math.round(mean(cold.map((f) => f.read))),
    window_bytes: m.p_max * frameBytes,
    peak_rss_bytes: peakRss,
    peak_rss_bytes_by_phase: peakByKind,
    gap_seconds: round(mean(warm.map((f) => f.gap!)), 3),
    warm_overhead_seconds: round(mean(warm.map((f) => f.seconds - f.model)), 3),
    cold_overhead_seconds: round(mean(cold.map((f) => f.seconds - f.model)), 3),
    steps: STEPS,
    step_ms: STEP_MS,
    chunks: figures.map((f) => ({ ...f, seconds: round(f.seconds, 3), model: round(f.model, 3), gap: f.gap === undefined ? undefined : round(f.gap, 3) })),
    load_average: os.loadavg().map((v) => round(v, 2)),
  };
}

/** Runs each configuration in a child process; s3rver runs in another. */
async function main() {
  const configs: Config[] = (process.env.SCALE_CONFIGS ?? 'local:1,local:2,s3:1,s3:2').split(',').map((c) => {
    const [store, rows] = c.split(':');
    return { store: store === 's3' ? 's3-emulator' : 'local', rows: rows === '2' ? 2 : 1 };
  });
  let s3: { port: number; stop: () => void } | undefined;
  if (configs.some((c) => c.store === 's3-emulator')) {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 's3-emulator.ts'), 'bench'], { stdio: ['pipe', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout! }).once('line', resolve);
      child.once('exit', (code) => reject(new Error(`s3rver exited ${code}`)));
    });
    s3 = { port: JSON.parse(line).port, stop: () => child.stdin!.end() };
  }
  const runs = [];
  const loadBefore = os.loadavg();
  try {
    for (const cfg of configs) {
      // SCALE_CPU_PROF=DIR: a V8 CPU profile of each configuration's process into DIR.
      const prof = process.env.SCALE_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.SCALE_CPU_PROF] : [];
      const child = spawn(process.execPath, [...prof, '--import', 'tsx', fileURLToPath(import.meta.url)], {
        // The thread pool as the worker image sizes it (gpu-worker/Dockerfile).
        env: { UV_THREADPOOL_SIZE: '16', ...process.env, SCALE_CHILD: JSON.stringify({ cfg, s3Port: s3?.port }) }, stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      // The worker's log lines (LOG_LEVEL=debug shows each chunk's phases) pass through to stderr.
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (line.startsWith('RESULT ')) out = line;
        else process.stderr.write(line + '\n');
      });
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
      const line = out;
      if (code !== 0 || !line) throw new Error(`configuration ${JSON.stringify(cfg)} failed (exit ${code})`);
      const run = JSON.parse(line.slice('RESULT '.length));
      runs.push(run);
      const pct = (v: number) => `${(v * 100).toFixed(1)}%`;
      console.log(`${run.geometry} ${run.store} rows=${run.rows}: model ${run.model_seconds_per_chunk} s/chunk, overhead warm ${pct(run.warm_overhead_fraction)} ` +
        `(${run.warm_overhead_seconds} s), cold ${pct(run.cold_overhead_fraction)} (${run.cold_overhead_seconds} s), gap ${run.gap_seconds} s, ` +
        `written ${(run.bytes_written_per_chunk / 2 ** 20).toFixed(0)} MiB/chunk, read cold ${(run.bytes_read_cold / 2 ** 20).toFixed(0)} MiB, ` +
        `peak RSS ${(run.peak_rss_bytes / 2 ** 30).toFixed(2)} GiB = ${(run.peak_rss_bytes / run.window_bytes).toFixed(2)}x window (${(run.window_bytes / 2 ** 20).toFixed(0)} MiB)`);
    }
  } finally {
    s3?.stop();
  }
  const cpu = os.cpus();
  const report = {
    runs,
    machine: `${cpu[0]?.model ?? 'unknown cpu'} x${cpu.length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.arch()}, node ${process.version}`,
    load_average_before: loadBefore.map((v) => round(v, 2)),
    load_average_after: os.loadavg().map((v) => round(v, 2)),
    date: new Date().toISOString(),
  };
  await mkdir(path.join(ROOT, 'bench', 'results'), { recursive: true });
  await writeFile(path.join(ROOT, 'bench', 'results', process.env.SCALE_OUT ?? 'scale.json'), JSON.stringify(report, null, 2) + '\n');
  console.log(`written to bench/results/${process.env.SCALE_OUT ?? 'scale.json'}`);
}

if (process.env.SCALE_CHILD) {
  const { cfg, s3Port } = JSON.parse(process.env.SCALE_CHILD) as { cfg: Config; s3Port?: number };
  const result = await runConfig(cfg, s3Port);
  process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
  process.exit(0);
} else {
  await main();
}
