// A job long enough for the cache window to slide several times, with starting frames (so the oldest
// segment is cut part-way once), run by a worker that keeps its window in memory and by one that
// reads every window back from the store; both are checked against a window built by hand from the
// stored segments. The same runs pin each chunk's starting noise to (seed, k), and a job with a
// non-default guidance scale is checked step by step.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelSession, type StepFetch, type StepInput, type StepOutput } from '../../gpu-worker/model-session.js';
import { ChunkWorker } from '../../gpu-worker/worker.js';
import { decodeSegment } from '../../shared/cache/segment.js';
import { readJob } from '../../shared/jobs/job-store.js';
import { cacheSegmentKey } from '../../shared/keys.js';
import { framesToPngs } from '../../shared/media/png.js';
import { frameFloats } from '../../shared/model/manifest.js';
import { ddimStep, guide } from '../../shared/sampler/ddim.js';
import { gaussianNoise } from '../../shared/sampler/noise.js';
import { ddimSchedule } from '../../shared/sampler/schedule.js';
import { GEOMETRY, localStack, MODEL_DIR, submitJob, tempDir } from './fixtures.js';

let model: ModelSession;
beforeAll(async () => { model = await ModelSession.open(MODEL_DIR); });
afterAll(async () => { await model.release(); });

type Stack = ReturnType<typeof localStack>;

interface Call { input: StepInput; fetch?: StepFetch; cacheSha: string; x: Float32Array; output: Partial<StepOutput> }

/** Runs every queued task with one worker (memo on or off), recording each model call. */
async function runAll(stack: Stack, windowMemoBytes?: number): Promise<Call[]> {
  const calls: Call[] = [];
  const step = model.step.bind(model);
  model.step = (async (input: StepInput, fetch?: StepFetch) => {
    // Hash and copy now: a kept window is advanced in place by later chunks.
    const cacheSha = createHash('sha256').update(new Uint8Array(input.cache.buffer, input.cache.byteOffset, input.cache.byteLength)).digest('hex');
    const x = Float32Array.from(input.x);
    const output = await (fetch ? step(input, fetch) : step(input));
    calls.push({ input, fetch, cacheSha, x, output });
    return output;
  }) as typeof model.step;
  const worker = new ChunkWorker({ ...stack, model, waitSec: 0.2, windowMemoBytes });
  try {
    while ((await worker.processNext()) !== undefined) { /* next task */ }
  } finally {
    await worker.close();
    model.step = step;
  }
  return calls;
}

/** Every stored object of the job's frames and cache, with its bytes. */
async function objects(stack: Stack, tenant: string, id: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const dir of ['frames/', 'cache/']) {
    for (const key of await stack.store.list(`jobs/${tenant}/${id}/${dir}`)) out.set(key, (await stack.store.get(key))!.body);
  }
  return out;
}

/**
 * The window before global frame `end` built the plain way: the K/V of frames
 * [max(0, end - P_max), end) taken from the stored segments, frame g in ring slot g mod P of the
 * graph's layout [depth, 2, rows, tokens, heads, P, head_dim].
 */
async function windowByHand(stack: Stack, tenant: string, id: string, initFrames: number, l: number, end: number, rows: number): Promise<{ sha: string; frames: number }> {
  const m = model.manifest;
  const runs = m.depth * 2 * rows * m.tokens_per_frame * m.heads;
  const hd = m.head_dim;
  const frameShape = [m.depth, 2, rows, m.tokens_per_frame, m.width];
  const perFrame = runs * hd;
  const decoded = new Map<string, Float32Array>();
  const segmentOf = async (g: number) => {
    const chunk = g < initFrames ? 'prefix' : Math.floor((g - initFrames) / l);
    const first = chunk === 'prefix' ? 0 : initFrames + chunk * l;
    if (!decoded.has(String(chunk))) {
      const body = (await stack.store.get(cacheSegmentKey(tenant, id, chunk)))!.body;
      decoded.set(String(chunk), decodeSegment(body, { modelSha: m.onnx_sha256, job: id, chunk: chunk === 'prefix' ? -1 : chunk, frameShape }).data);
    }
    return decoded.get(String(chunk))!.subarray((g - first) * perFrame, (g - first + 1) * perFrame);
  };
  const start = Math.max(0, end - m.p_max);
  const P = end - start;
  const cache = new Float32Array(P * perFrame);
  for (let g = start; g < end; g++) {
    const kv = await segmentOf(g);
    for (let a = 0; a < runs; a++) {
      for (let e = 0; e < hd; e++) cache[a * P * hd + (g % P) * hd + e] = kv[a * hd + e];
    }
  }
  return { sha: createHash('sha256').update(new Uint8Array(cache.buffer)).digest('hex'), frames: P };
}

/** Prediction calls grouped by the chunk's first global frame, in order. */
function byChunk(calls: Call[]): Map<number, Call[]> {
  const out = new Map<number, Call[]>();
  for (const c of calls) if (c.fetch === 'prediction') out.set(c.input.pos, [...(out.get(c.input.pos) ?? []), c]);
  return out;
}

describe('an 8-chunk job whose window slides past the starting frames and then chunk by chunk', () => {
  const INIT = 4, CHUNKS = 8, SEED = 5;
  let l: number;
  let kept: Stack, reread: Stack;
  let keptCalls: Call[], rereadCalls: Call[];

  beforeAll(async () => {
    l = model.manifest.chunk_frames;
    const ff = frameFloats(model.manifest);
    // Starting frames with structure (not a flat colour), so each frame's K/V differ.
    const init = gaussianNoise(INIT * ff, { seed: 99, chunk: 0 }).map((v) => Math.max(-1, Math.min(1, v / 3)));
    const pngs = framesToPngs(init, GEOMETRY);
    kept = localStack(tempDir());
    reread = localStack(tempDir());
    const request = { id: 'slide', frames: CHUNKS * l, steps: 2, seed: SEED, label: 1, initPngs: pngs };
    await submitJob(kept, model.manifest, request);
    await submitJob(reread, model.manifest, request);
    keptCalls = await runAll(kept);
    rereadCalls = await runAll(reread, 0);
  }, 120_000);

  it('finishes, and the window really slid: it grew to P_max, then kept P_max frames', async () => {
    for (const s of [kept, reread]) expect((await readJob(s.store, 'tenant1', 'slide'))!.job.status).toBe('succeeded');
    const chunks = byChunk(keptCalls);
    expect([...chunks.keys()]).toEqual(Array.from({ length: CHUNKS }, (_, k) => INIT + k * l));
    const p = model.manifest.p_max;
    expect([...chunks.values()].map((c) => c[0].input.cacheFrames)).toEqual([...chunks.keys()].map((f) => Math.min(f, p)));
    // More than one slide: at least two chunks start after the window is full.
    expect([...chunks.keys()].filter((f) => f > p).length).toBeGreaterThanOrEqual(2);
  });

  it('a worker keeping its window in memory and one reading every window from the store make identical bytes', async () => {
    const [a, b] = [await objects(kept, 'tenant1', 'slide'), await objects(reread, 'tenant1', 'slide')];
    expect(a.size).toBe(CHUNKS * l + CHUNKS); // frames + prefix and chunks 0..6 segments
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [key, bytes] of a) expect(b.get(key)!.equals(bytes), key).toBe(true);
  });

  it('every chunk of both runs attends to exactly the window built by hand from the stored segments', async () => {
    for (const calls of [keptCalls, rereadCalls]) {
      for (const [pos, chunkCalls] of byChunk(calls)) {
        const want = await windowByHand(kept, 'tenant1', 'slide', INIT, l, pos, chunkCalls[0].input.rows);
        for (const c of chunkCalls) {
          expect(c.input.cacheFrames, `chunk at frame ${pos}`).toBe(want.frames);
          expect(c.cacheSha, `window of the chunk at frame ${pos}`).toBe(want.sha);
        }
      }
    }
  });

  it("each chunk k starts from the noise of (seed, k), not another chunk's", () => {
    const ff = frameFloats(model.manifest);
    for (const [pos, chunkCalls] of byChunk(keptCalls)) {
      const k = (pos - INIT) / l;
      const first = chunkCalls[0];
      const rowFloats = first.input.frames * ff;
      const want = gaussianNoise(l * ff, { seed: SEED, chunk: k }).subarray(0, rowFloats);
      for (let r = 0; r < first.input.rows; r++) {
        expect(first.x.subarray(r * rowFloats, (r + 1) * rowFloats), `chunk ${k}, row ${r}`).toEqual(want);
      }
    }
  });
});

describe('a job with a guidance scale other than the model default', () => {
  it('combines every step as uncond + g (cond - uncond) with the requested g', async () => {
    const m = model.manifest;
    const g = 4.5;
    expect(g).not.toBe(m.guidance.default);
    const stack = localStack(tempDir());
    const steps = 3;
    await submitJob(stack, m, { id: 'cfg', frames: m.chunk_frames, steps, seed: 3, label: 2, guidance: g });
    const calls = byChunk(await runAll(stack, 0)).get(0)!;
    expect(calls).toHaveLength(steps);
    const schedule = ddimSchedule(m.schedule.alphas_cumprod, steps);
    const n = calls[0].x.length / 2;
    for (let i = 0; i < steps; i++) {
      const { input, x, output } = calls[i];
      expect(input.rows).toBe(2);
      expect(input.labels).toEqual([2, m.null_label]);
      expect(input.t[0]).toBe(schedule[i].t);
      const next = ddimStep(x.subarray(0, n), guide(output.prediction!, g), schedule[i], m.prediction, m.frame.range);
      // The next call's x (or, after the last step, the stored frames) follows from g.
      if (i + 1 < steps) expect(calls[i + 1].x.subarray(0, n), `step ${i}`).toEqual(next);
    }
    expect((await readJob(stack.store, 'tenant1', 'cfg'))!.job.status).toBe('succeeded');
  });
});
