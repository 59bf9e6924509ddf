import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelSession } from '../../gpu-worker/model-session.js';
import { cleanCopyKey } from '../../gpu-worker/clean-copy.js';
import { ChunkWorker } from '../../gpu-worker/worker.js';
import { decodeSegment, encodeSegment } from '../../shared/cache/segment.js';
import { readJob } from '../../shared/jobs/job-store.js';
import { cacheSegmentKey, frameKey } from '../../shared/keys.js';
import { framesToPngs, pngsToFrames } from '../../shared/media/png.js';
import type { Job } from '../../shared/schemas/job.js';
import type { ObjectStore } from '../../shared/store/object-store.js';
import { FRAME_FLOATS, GEOMETRY, localStack, MODEL_DIR, submitJob, tempDir } from './fixtures.js';

let model: ModelSession;
beforeAll(async () => { model = await ModelSession.open(MODEL_DIR); });
afterAll(async () => { await model.release(); });

// 4 given + 4 chunks: the window of the last chunk holds the prefix and chunks 0-1 (P_max 12, l <= 4)
const CHUNKS = 4;

/** Starting frames: a bright square on black, moving right. */
function initPngs(): Buffer[] {
  const { channels: C, height: H, width: W } = GEOMETRY;
  const f = new Float32Array(4 * FRAME_FLOATS).fill(-1);
  for (let i = 0; i < 4; i++) for (let c = 0; c < C; c++) for (let y = 10; y < 16; y++) for (let x = 4 + 2 * i; x < 10 + 2 * i; x++) {
    f[((i * C + c) * H + y) * W + x] = c === 1 ? -1 : 0.9;
  }
  return framesToPngs(f, GEOMETRY);
}

/**
 * Runs a job to its end on a worker that keeps no window between chunks (every chunk reads its
 * cache from the store, as a fresh worker does); `between(k)` runs after chunk task k.
 */
async function runJob(between: (dir: string, job: Job, k: number) => void = () => {}, wrapStore = (s: ObjectStore) => s) {
  const calls = model.calls;
  const dir = tempDir();
  const stack = localStack(dir);
  const l = model.manifest.chunk_frames;
  const job = await submitJob(stack, model.manifest, { id: 'repair', frames: CHUNKS * l, steps: 2, seed: 5, initPngs: initPngs() });
  const worker = new ChunkWorker({ ...stack, store: wrapStore(stack.store), model, waitSec: 0.2, windowMemoBytes: 0 });
  for (let k = 0; ; k++) {
    const outcome = await worker.processNext();
    if (outcome !== 'computed') break;
    between(dir, job, k);
  }
  await worker.close();
  const file = (key: string) => path.join(dir, 'store', ...key.split('/'));
  const frames = async (chunk: number) => pngsToFrames(await Promise.all(Array.from({ length: l }, async (_, i) =>
    (await stack.store.get(frameKey(job.tenant, job.id, chunk, i)))!.body)), GEOMETRY);
  return { stack, job, file, frames, done: (await readJob(stack.store, job.tenant, job.id))!.job, modelCalls: model.calls - calls };
}

const segmentFile = (dir: string, job: Job, chunk: number | 'prefix') =>
  path.join(dir, 'store', ...cacheSegmentKey(job.tenant, job.id, chunk).split('/'));
const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe('damaged cache segments', () => {
  let clean: Awaited<ReturnType<typeof runJob>>;
  beforeAll(async () => { clean = await runJob(); });

  it('rebuilds a lost prefix segment byte for byte, so the video is the same', async () => {
    const original = readFileSync(clean.file(cacheSegmentKey('tenant1', 'repair', 'prefix')));
    const run = await runJob((dir, job, k) => { if (k === 0) rmSync(segmentFile(dir, job, 'prefix')); });
    expect(run.done.status).toBe('succeeded');
    expect(readFileSync(run.file(cacheSegmentKey(run.job.tenant, run.job.id, 'prefix'))).equals(original)).toBe(true);
    for (let k = 0; k < CHUNKS; k++) expect(maxDiff(await run.frames(k), await clean.frames(k))).toBe(0);
  });

  it('rebuilds a corrupt chunk segment from its clean copy, after its own window: the video is unchanged', async () => {
    const run = await runJob((dir, job, k) => {
      if (k !== 1) return;
      // Bit rot in segment 0's payload, found when chunk 2 reads its window.
      const file = segmentFile(dir, job, 0);
      const bytes = readFileSync(file);
      bytes[bytes.length - 10] ^= 0xff;
      writeFileSync(file, bytes);
    });
    expect(run.done.status).toBe('succeeded');
    expect(run.done.progress.chunks_done).toBe(CHUNKS);
    // The rewritten segment is the lost one byte for byte, so every later chunk is the undamaged run's.
    const key = cacheSegmentKey('tenant1', 'repair', 0);
    expect(readFileSync(run.file(key)).equals(readFileSync(clean.file(key)))).toBe(true);
    for (let k = 0; k < CHUNKS; k++) expect(maxDiff(await run.frames(k), await clean.frames(k))).toBe(0);
    expect(run.done.repairs?.map((r) => [r.object, r.from, r.lossy])).toEqual([['cache/000000.kv', 'clean_copy', false]]);
  });

  it('falls back to the 8-bit frames when the clean copy is gone too, and says so in the job', async () => {
    const run = await runJob((dir, job, k) => {
      if (k !== 1) return;
      rmSync(segmentFile(dir, job, 0));
      rmSync(path.join(dir, 'store', ...cleanCopyKey(job, 0).split('/')));
    });
    expect(run.done.status).toBe('succeeded');
    expect(run.done.repairs?.map((r) => [r.object, r.from, r.lossy])).toEqual([['cache/000000.kv', 'png', true]]);
    // The K/V of the rounded frames: close to the original's, not equal.
    const m = model.manifest;
    const expect0 = { modelSha: m.onnx_sha256, job: 'repair', chunk: 0 };
    const rebuilt = decodeSegment(readFileSync(run.file(cacheSegmentKey('tenant1', 'repair', 0))), expect0).data;
    const original = decodeSegment(readFileSync(clean.file(cacheSegmentKey('tenant1', 'repair', 0))), expect0).data;
    const diff = maxDiff(rebuilt, original);
    expect(diff).toBeGreaterThan(0);
    expect(diff).toBeLessThan(0.1);
    for (const k of [0, 1]) expect(maxDiff(await run.frames(k), await clean.frames(k))).toBe(0);
    for (const k of [2, 3]) {
      const a = await run.frames(k), b = await clean.frames(k);
      const mse = a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0) / a.length;
      expect(10 * Math.log10(4 / mse)).toBeGreaterThan(35); // PSNR over the [-1, 1] range
    }
  });

  it('rebuilds several damaged segments oldest first, each once', async () => {
    const run = await runJob((dir, job, k) => {
      if (k !== 1) return; // chunk 2's window: prefix, segment 0, segment 1
      rmSync(segmentFile(dir, job, 0));
      writeFileSync(segmentFile(dir, job, 1), readFileSync(segmentFile(dir, job, 1)).subarray(0, 100));
    });
    expect(run.done.status).toBe('succeeded');
    // One extra cache-write pass per damaged segment: segment 1's rebuild reads segment 0 already repaired.
    expect(run.modelCalls).toBe(clean.modelCalls + 2);
    for (const k of [0, 1]) {
      const chunk = cacheSegmentKey(run.job.tenant, run.job.id, k);
      expect(() => decodeSegment(readFileSync(run.file(chunk)), { modelSha: model.manifest.onnx_sha256, job: 'repair', chunk: k })).not.toThrow();
    }
  });

  it('reads a segment again before calling it damaged: a read cut short never replaces a good one', async () => {
    const key = cacheSegmentKey('tenant1', 'repair', 0);
    let cut = 0;
    const run = await runJob(undefined, (store) => new Proxy(store, {
      get(target, prop, receiver) {
        if (prop !== 'readRange') return Reflect.get(target, prop, receiver);
        return async (k: string, start: number, into: Uint8Array) => {
          const got = await target.readRange(k, start, into);
          // The first read of segment 0's frames loses its tail in transit.
          if (got && k === key && start > 0 && cut++ === 0) return { ...got, bytes: got.bytes - 7 };
          return got;
        };
      },
    }));
    expect(cut).toBeGreaterThan(1);
    expect(run.done.status).toBe('succeeded');
    expect(run.modelCalls).toBe(clean.modelCalls);
    expect(readFileSync(run.file(key)).equals(readFileSync(clean.file(key)))).toBe(true);
  });

  it('rebuilds a well-formed segment that claims other frames than its place in the video', async () => {
    const run = await runJob((dir, job, k) => {
      if (k !== 0) return;
      const file = segmentFile(dir, job, 0);
      const { meta, data } = decodeSegment(readFileSync(file), { modelSha: model.manifest.onnx_sha256, job: job.id });
      writeFileSync(file, encodeSegment(data, { ...meta, firstFrame: meta.firstFrame + 4 }, model.manifest.kv_dtype));
    });
    expect(run.done.status).toBe('succeeded');
    expect(run.modelCalls).toBe(clean.modelCalls + 1);
    const meta = decodeSegment(readFileSync(run.file(cacheSegmentKey('tenant1', 'repair', 0))), { modelSha: model.manifest.onnx_sha256, job: 'repair' }).meta;
    expect(meta.firstFrame).toBe(4);
  });

  it('fails the job with the reason when the frames to rebuild from are gone too', async () => {
    const run = await runJob((dir, job, k) => {
      if (k !== 0) return;
      rmSync(segmentFile(dir, job, 0));
      rmSync(path.join(dir, 'store', ...cleanCopyKey(job, 0).split('/')));
      rmSync(path.join(dir, 'store', ...frameKey(job.tenant, job.id, 0, 2).split('/')));
    });
    expect(run.done.status).toBe('failed');
    expect(run.done.error?.code).toBe('cache_missing');
    expect(run.done.error?.message).toContain('000000-002.png');
    expect(run.done.progress.chunks_done).toBe(1);
  });

  it('fails the job on a segment made by another model, rather than mixing models in one video', async () => {
    const run = await runJob((dir, job, k) => {
      if (k !== 0) return;
      const file = segmentFile(dir, job, 'prefix');
      const m = model.manifest;
      const { meta, data } = decodeSegment(readFileSync(file), { modelSha: m.onnx_sha256, job: job.id });
      writeFileSync(file, encodeSegment(data, { ...meta, modelSha: 'f'.repeat(64) }, m.kv_dtype));
    });
    expect(run.done.status).toBe('failed');
    expect(run.done.error?.code).toBe('model_mismatch');
  });
});
