/**
 * `npm run demo`: the whole product on one machine, no AWS. Starts the embedded stack, submits a
 * 64-frame job through the HTTP API (continuing 4 given frames), shows progress as chunks finish,
 * receives the signed `completed` webhook, and writes out/demo.mp4 and out/demo.gif.
 * MODEL_DIR serves another model: a latent (format-2) one continues one drawn starting image,
 * unconditionally (e.g. MODEL_DIR=model/artifacts/official-tiny-random).
 */
import { mkdir, readFile, rm } from 'node:fs/promises';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ca2vdmClient } from '../shared/api/client.js';
import { framesToPngs } from '../shared/media/png.js';
import { verifyWebhook } from '../shared/webhooks/signature.js';
import { startEmbeddedStack } from './stack.js';

// The demo draws its own progress; the worker's per-chunk info lines would break the bar
// (LOG_LEVEL=info brings them back; warnings and errors always show).
process.env.LOG_LEVEL ??= 'warn';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FRAMES = Number(process.env.DEMO_FRAMES ?? 64);
const OUT = path.join(ROOT, 'out');
const t0 = performance.now();
const stages: [string, number][] = [];
let mark = t0;
const stage = (name: string) => {
  const now = performance.now();
  stages.push([name, (now - mark) / 1000]);
  mark = now;
};

// A webhook receiver on loopback, as a user's server would be (the demo allows loopback targets).
const webhooks: { type: string; verified: boolean }[] = [];
let secret = '';
const receiver = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => (body += c));
  req.on('end', () => {
    const h = (n: string) => String(req.headers[n] ?? '');
    const verified = verifyWebhook(secret, { id: h('webhook-id'), timestamp: h('webhook-timestamp'), signature: h('webhook-signature') }, body);
    webhooks.push({ type: JSON.parse(body).type, verified });
    res.writeHead(204).end();
  });
});
await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;

// 1. The stack, in a fresh data folder.
const dataDir = path.join(ROOT, '.data', 'demo');
await rm(dataDir, { recursive: true, force: true });
const stack = await startEmbeddedStack({ dataDir, port: 0, allowLoopbackWebhooks: true, ...(process.env.MODEL_DIR ? { modelDir: process.env.MODEL_DIR } : {}) });
const client = new Ca2vdmClient({ baseUrl: stack.url, apiKey: stack.apiKey });
secret = (await client.webhookSecret()).key;
stage('start the stack (model load, API, worker)');
console.log(`embedded stack at ${stack.url} (model ${stack.model.manifest.name}, ${stack.model.provider} execution provider)`);

// 2. Submit: continue 4 frames of a bouncing-ball video made by the training data generator (the
//    shipped model), or, for a latent model, one drawn starting image of the model's size.
const assets = path.join(ROOT, 'scripts', 'assets');
const latent = stack.model.manifest.format === 2;
const meta = latent
  ? { label: undefined }
  : JSON.parse(await readFile(path.join(assets, 'demo-init.json'), 'utf8')) as { label: string };
const init = latent
  ? framesToPngs(drawnStart(stack.model.manifest.frame.width, stack.model.manifest.frame.height), stack.model.manifest.frame)
  : await Promise.all([0, 1, 2, 3].map((i) => readFile(path.join(assets, `demo-init-${i}.png`))));
const job = await client.createVideo({
  frames: FRAMES, ...(meta.label !== undefined ? { label: meta.label } : {}), seed: 7, init_frames: init.map((b) => b.toString('base64')),
  webhook: hook, webhook_events_filter: ['completed'],
});
stage('submit through the HTTP API');
console.log(`job ${job.id}: ${FRAMES} frames after ${init.length} given ${init.length === 1 ? 'one' : 'ones'}${meta.label !== undefined ? `, label "${meta.label}"` : ''}`);

// 3. Progress as chunks finish.
const bar = (done: number, total: number) => {
  const w = 30, n = Math.round((w * done) / Math.max(total, 1));
  return `[${'#'.repeat(n)}${'.'.repeat(w - n)}] ${done}/${total} chunks`;
};
const final = await client.waitFor(job.id, {
  intervalMs: 200,
  onProgress: (j) => process.stdout.write(`\r  ${bar(j.progress.chunks_done, j.progress.chunks_total)}  ${j.progress.frames_done} frames  ${j.status}   `),
});
process.stdout.write('\n');
stage('generate all chunks and encode');
if (final.status !== 'succeeded') {
  console.error(`job ended ${final.status}: ${JSON.stringify(final.error)}`);
  await stack.close();
  process.exit(1);
}

// 4. Results.
await mkdir(OUT, { recursive: true });
const mp4 = path.join(OUT, 'demo.mp4'), gif = path.join(OUT, 'demo.gif');
await client.download(final.output.video!, mp4);
await client.download(final.output.gif!, gif);
stage('download the outputs');
for (let i = 0; i < 50 && webhooks.length === 0; i++) await new Promise((r) => setTimeout(r, 100));
await stack.close();
receiver.close();

const chunkSeconds = final.metrics.chunk_seconds;
const mean = chunkSeconds.reduce((a, b) => a + b, 0) / chunkSeconds.length;
console.log(`\nwrote ${path.relative(process.cwd(), mp4)} (H.264) and ${path.relative(process.cwd(), gif)}`);
console.log(`webhook: ${webhooks.map((w) => `${w.type} (signature ${w.verified ? 'verified' : 'INVALID'})`).join(', ') || 'none received'}`);
console.log('\nstage seconds:');
for (const [name, s] of stages) console.log(`  ${s.toFixed(2).padStart(7)}  ${name}`);
console.log(`  ${((performance.now() - t0) / 1000).toFixed(2).padStart(7)}  total`);
console.log(`chunks: ${chunkSeconds.length}, ${mean.toFixed(2)} s each on average (first ${chunkSeconds[0]?.toFixed(2)} s, last ${chunkSeconds.at(-1)?.toFixed(2)} s), queue wait ${final.metrics.queue_wait_s ?? 0} s`);

/** A starting image for a latent model: a warm disc over a sky-like gradient, RGB in [-1, 1], [3, H, W]. */
function drawnStart(width: number, height: number): Float32Array {
  const out = new Float32Array(3 * width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const inDisc = (x - width * 0.35) ** 2 + (y - height * 0.6) ** 2 < (width * 0.18) ** 2;
      const rgb = inDisc ? [0.9, 0.5, -0.3] : [-0.6 + y / height, -0.2 + 0.6 * y / height, 0.8];
      rgb.forEach((v, c) => { out[c * width * height + y * width + x] = v; });
    }
  }
  return out;
}
