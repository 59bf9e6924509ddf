import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kvFloats, ModelSession } from '../../gpu-worker/model-session.js';
import { decodeSegment, PREFIX_CHUNK } from '../../shared/cache/segment.js';
import { cacheSegmentKey, frameKey } from '../../shared/keys.js';
import { framesToPngs, pngsToFrames } from '../../shared/media/png.js';
import { contextFrames } from '../../shared/sampler/context.js';
import { drainQueue, FRAME_FLOATS, GEOMETRY, localStack, MODEL_DIR, submitJob, tempDir, watchingSteps } from './fixtures.js';

const CONTEXT_T = 120;
/** Largest difference of two float arrays (cheap to report, unlike a diff of a million values). */
const maxDiff = (a: Float32Array, b: Float32Array) => (a.length !== b.length ? Infinity : a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0));

/** The shipped graph under a manifest that serves context noise (the graph itself is the same). */
function noisyContextModelDir(): string {
  const dir = path.join(tempDir('ca2vdm-ctx-'), 'model');
  mkdirSync(dir);
  const manifest = JSON.parse(readFileSync(path.join(MODEL_DIR, 'manifest.json'), 'utf8'));
  symlinkSync(path.join(MODEL_DIR, manifest.onnx), path.join(dir, manifest.onnx));
  writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify({ ...manifest, context_t: CONTEXT_T }));
  return dir;
}

let clean: ModelSession;
let noisy: ModelSession;
beforeAll(async () => {
  clean = await ModelSession.open(MODEL_DIR);
  noisy = await ModelSession.open(noisyContextModelDir());
});
afterAll(async () => {
  await clean.release();
  await noisy.release();
});

// Starting frames: a lit square on black, so noise has something to change.
const column = (i: number) => (i % (GEOMETRY.height * GEOMETRY.width)) % GEOMETRY.width;
const init = Float32Array.from({ length: 4 * FRAME_FLOATS }, (_, i) => (column(i) > 8 && column(i) < 20 ? 0.8 : -1));
const initPngs = framesToPngs(init, GEOMETRY);

async function runJob(model: ModelSession) {
  const stack = localStack(tempDir());
  const job = await submitJob(stack, model.manifest, { frames: 2 * model.manifest.chunk_frames, steps: 3, seed: 11, initPngs });
  expect((await drainQueue(stack, model)).map((e) => e.outcome)).toEqual(['computed', 'finalized']);
  const segment = async (chunk: 'prefix' | number) => {
    const body = (await stack.store.get(cacheSegmentKey(job.tenant, job.id, chunk)))!.body;
    const m = model.manifest;
    return decodeSegment(body, { modelSha: m.onnx_sha256, job: job.id, chunk: chunk === 'prefix' ? PREFIX_CHUNK : chunk,
      frameShape: [m.depth, 2, 2, m.tokens_per_frame, m.width] }).data;
  };
  const frame = async (chunk: number, i: number) => (await stack.store.get(frameKey(job.tenant, job.id, chunk, i)))!.body;
  const lastFrame = () => frame(1, model.manifest.chunk_frames - 1);
  return { segment, lastFrame };
}

describe('context noise (manifest context_t)', () => {
  it('writes the K/V of the starting frames noised at context_t, embedded at context_t', async () => {
    const run = await runJob(noisy);
    const m = noisy.manifest;
    const x = contextFrames(pngsToFrames(initPngs, GEOMETRY), m, { seed: 11, chunk: -1 });
    const { kv } = await noisy.step({
      x: Float32Array.from([...x, ...x]), t: new Float32Array(8).fill(CONTEXT_T), labels: [1, m.null_label!], pos: 0,
      cache: new Float32Array(0), cacheFrames: 0, rows: 2, frames: 4,
    }, 'kv');
    expect(maxDiff(await run.segment('prefix'), kvFloats(kv))).toBe(0);
  });

  it('runs every cache-write pass (starting frames and chunks) at t = context_t', async () => {
    const seen: number[][] = [];
    await watchingSteps(noisy, (input, fetch) => { if (fetch === 'kv') seen.push([...new Set(input.t)]); }, () => runJob(noisy));
    expect(seen).toEqual([[CONTEXT_T], [CONTEXT_T]]); // prefix, chunk 0 (the last chunk writes none)
  });

  it('changes the cache and so the video, and repeats exactly for the same job', async () => {
    const [a, b, base] = [await runJob(noisy), await runJob(noisy), await runJob(clean)];
    expect(maxDiff(await a.segment(0), await b.segment(0))).toBe(0);
    expect((await a.lastFrame()).equals(await b.lastFrame())).toBe(true);
    expect(maxDiff(await a.segment('prefix'), await base.segment('prefix'))).toBeGreaterThan(1e-2);
    expect((await a.lastFrame()).equals(await base.lastFrame())).toBe(false);
  });
});
