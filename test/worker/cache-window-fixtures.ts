import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { standInManifest, StandInModel } from '../../bench/standin-model.js';
import { attentionShape, cacheWritePass, readWindow, writeSegment, type CacheDeps } from '../../gpu-worker/cache-window.js';
import { decodeStoredPngs, f16Precision, writeCleanCopy } from '../../gpu-worker/clean-copy.js';
import type { ChunkFailure } from '../../gpu-worker/errors.js';
import { firstFrameOf, geometry, jobPlan, type JobPlan } from '../../gpu-worker/job-plan.js';
import type { StepFetch, StepGraph, StepInput, StepOutput } from '../../gpu-worker/model-session.js';
import { advanceCacheWindow, emptyWindow, type AssembledWindow } from '../../shared/cache/assemble.js';
import { f16ToF32 } from '../../shared/cache/f16.js';
import { PREFIX_CHUNK, type KvData } from '../../shared/cache/segment.js';
import { createJob, readJob } from '../../shared/jobs/job-store.js';
import { newJob } from '../../shared/jobs/lifecycle.js';
import { frameKey, jobPrefix } from '../../shared/keys.js';
import { framesToPngs } from '../../shared/media/png.js';
import { frameFloats, parseManifest, type Manifest } from '../../shared/model/manifest.js';
import type { Job, JobParent } from '../../shared/schemas/job.js';
import type { ObjectStore, PutBody, PutOptions, RangeRead } from '../../shared/store/object-store.js';
import { localStack, MANIFEST, submitJob, tempDir } from './fixtures.js';

// For the cache window's tests: a chunk's window read back from segments in the real local store,
// with no model: a stand-in step graph (bench/standin-model.ts, the step graph's contract at any
// geometry) of a tiny geometry makes the K/V, each value depending on the frame's position, the frames and the window
// it was given, so a segment rebuilt after the wrong window, from the wrong frames or with the wrong
// noise has other bytes. Both cache layouts, fp16 and float windows, one and two batch rows.

export const TINY = { name: 'tiny', depth: 1, heads: 2, headDim: 2, tokensPerFrame: 2, chunkFrames: 2, pMax: 5 };

/** The stand-in's manifest in `layout`, its window in `cacheDtype`, conditioning noised at t = 50. */
export const manifestOf = (layout: 'frames' | 'layers', cacheDtype: 'float16' | 'float32'): Manifest =>
  parseManifest({ ...standInManifest(MANIFEST, TINY, {}, layout), cache_dtype: cacheDtype, context_t: 50 });

/** The stand-in with every K/V lane told apart (its own K/V fills a frame with one value), calls counted. */
export class TinyModel implements StepGraph {
  readonly inner: StandInModel;
  calls: { input: StepInput; fetch?: StepFetch }[] = [];
  constructor(readonly manifest: Manifest) {
    this.inner = new StandInModel(manifest, 0);
  }
  async step(input: StepInput): Promise<StepOutput>;
  async step<K extends StepFetch>(input: StepInput, fetch: K): Promise<Pick<StepOutput, K>>;
  async step(input: StepInput, fetch?: StepFetch): Promise<Partial<StepOutput>> {
    this.calls.push({ input, fetch });
    const out = await this.inner.step(input, fetch as 'kv');
    const kv = out.kv as Uint16Array;
    return { ...out, kv: kv.map((v, i) => v ^ (i & 0x1f)) };
  }
  async release(): Promise<void> {}
}

export const L = TINY.chunkFrames;
export const f16s = (kv: KvData) => (kv instanceof Uint16Array ? kv : new Uint16Array(0));

/** A job of `chunks` chunks with `init` starting frames, and its cache made as the worker makes it. */
export async function setup(opts: { layout?: 'frames' | 'layers'; cacheDtype?: 'float16' | 'float32'; init?: number; chunks?: number; frames?: number; guided?: boolean; stored?: number } = {}) {
  const m = manifestOf(opts.layout ?? 'layers', opts.cacheDtype ?? 'float16');
  const dir = tempDir('cache-window-');
  const stack = localStack(dir);
  const model = new TinyModel(m);
  const deps: CacheDeps = { store: stack.store, model };
  const init = opts.init ?? 3;
  const chunks = opts.chunks ?? 5;
  const initFrames = pseudoFrames(m, init, 1);
  const job = await submitJob(stack, m, {
    frames: opts.frames ?? chunks * L, steps: 2, seed: 11, label: 1, guidance: opts.guided === false ? 1 : 2,
    initPngs: init > 0 ? framesToPngs(initFrames, geometry(m)) : [],
  });
  const plan = jobPlan(job, m);
  const made = await makeCache(deps, job, plan, opts.stored ?? chunks - 1);
  return { m, dir, stack, model, deps, job, plan, ...made, file: (key: string) => path.join(dir, 'store', ...key.split('/')) };
}

/** `n` frames of values in the frame range, fp16-exact as a clean copy holds them. */
export function pseudoFrames(m: Manifest, n: number, seed: number): Float32Array {
  return f16Precision(Float32Array.from({ length: n * frameFloats(m) }, (_, i) => Math.sin(i * 0.37 + seed * 1.7) * 0.9));
}

/**
 * Stores the prefix segment and chunks 0..stored-1 (clean copy, PNG frames, segment) as the worker
 * does, each after the window read cold from the segments before it, and carries the window in
 * memory alongside: every window, both ways, and every segment's K/V are returned.
 */
export async function makeCache(deps: CacheDeps, job: Job, plan: JobPlan, stored: number) {
  const m = deps.model.manifest;
  const shape = attentionShape(m, plan);
  const kvs = new Map<number, KvData>();
  let carried = emptyWindow(m.cache_dtype);
  if (plan.initFrames > 0) {
    const pngs = await Promise.all(job.request.init_frames.keys.map(async (k) => (await deps.store.get(k))!.body));
    const frames = decodeStoredPngs(deps, pngs, job.request.init_frames.keys);
    const kv = await cacheWritePass(deps.model, job, plan, frames, PREFIX_CHUNK, 0, emptyWindow(m.cache_dtype));
    await writeSegment(deps, job, plan, PREFIX_CHUNK, 0, kv);
    kvs.set(PREFIX_CHUNK, kv);
    carried = advanceCacheWindow(carried, kv, 0, plan.initFrames, m.p_max, shape);
  }
  const windows: { carried: AssembledWindow; cold: AssembledWindow }[] = [];
  for (let j = 0; j < stored; j++) {
    const first = firstFrameOf(plan, j);
    const cold = await readWindow(deps, job, plan, first);
    windows.push({ carried: { ...carried, cache: carried.cache.slice() }, cold });
    const n = Math.min(L, plan.framesTotal - j * L);
    const frames = pseudoFrames(m, n, 100 + j);
    await writeCleanCopy(deps.store, job, j, frames, n);
    const pngs = framesToPngs(frames, geometry(m));
    await Promise.all(pngs.map((png, i) => deps.store.put(frameKey(job.tenant, job.id, j, i), png)));
    const kv = await cacheWritePass(deps.model, job, plan, frames, j, first, cold);
    await writeSegment(deps, job, plan, j, first, kv);
    kvs.set(j, kv);
    carried = advanceCacheWindow(carried, kv, first, n, m.p_max, shape);
  }
  return { kvs, windows, carried };
}

/** The window before `end` written slot by slot from the segments' K/V (frame g of run a in slot g mod P). */
export function ringOf(m: Manifest, plan: JobPlan, kvs: Map<number, KvData>, end: number): AssembledWindow {
  const { runs, headDim: hd } = attentionShape(m, plan);
  const frameLen = runs * hd;
  const frameOf = (g: number) => {
    const j = g < plan.startFrame ? PREFIX_CHUNK : Math.floor((g - plan.startFrame) / plan.chunkFrames);
    const first = j === PREFIX_CHUNK ? 0 : firstFrameOf(plan, j);
    return f16s(kvs.get(j)!).subarray((g - first) * frameLen, (g - first + 1) * frameLen);
  };
  const P = Math.min(end, m.p_max);
  const cache = m.cache_dtype === 'float16' ? new Uint16Array(P * frameLen) : new Float32Array(P * frameLen);
  for (let g = end - P; g < end; g++) {
    const frame = m.cache_dtype === 'float16' ? frameOf(g) : f16ToF32(frameOf(g));
    for (let a = 0; a < runs; a++) for (let k = 0; k < hd; k++) cache[(a * P + (g % P)) * hd + k] = frame[a * hd + k];
  }
  return { cache, frames: P, firstFrame: end - P };
}

export const hex = (w: AssembledWindow) => Buffer.from(w.cache.buffer, w.cache.byteOffset, w.cache.byteLength).toString('hex');
export const flip = (file: string, at: number) => { const b = readFileSync(file); b[at] ^= 0xff; writeFileSync(file, b); };
export const failureOf = async (p: Promise<unknown>) => p.then(() => { throw new Error('resolved'); }, (err: unknown) => err as ChunkFailure);
export type Setup = Awaited<ReturnType<typeof setup>>;
export const repairsOf = async (s: Setup) => (await readJob(s.stack.store, s.job.tenant, s.job.id))!.job.repairs?.map((r) => [r.object, r.from, r.lossy]);
export const objectOf = (job: Job, key: string) => key.slice(jobPrefix(job.tenant, job.id).length);

/** The local store with some calls replaced (fault injection). */
export class FaultyStore implements ObjectStore {
  heads = 0;
  gets: string[] = [];
  constructor(private readonly inner: ObjectStore, private readonly faults: { readRange?: (key: string, start: number, into: Uint8Array) => Promise<RangeRead | null> | null | undefined; put?: (key: string) => void } = {}) {}
  get(key: string) { this.gets.push(key); return this.inner.get(key); }
  head(key: string) { this.heads++; return this.inner.head(key); }
  put(key: string, body: PutBody, options?: PutOptions) { this.faults.put?.(key); return this.inner.put(key, body, options); }
  async readRange(key: string, start: number, into: Uint8Array) {
    const faulty = this.faults.readRange?.(key, start, into);
    return faulty !== undefined ? faulty : this.inner.readRange(key, start, into);
  }
  list(prefix: string) { return this.inner.list(prefix); }
  delete(key: string) { return this.inner.delete(key); }
}

/** A job continuing `parent` from its frame `frames` (as the API records it). */
export async function continuation(s: Setup, parent: Job, parentPlan: JobPlan, frames: number, id: string) {
  const record: JobParent = {
    id: parent.id, frames, start_frame: (parent.parent?.start_frame ?? parentPlan.initFrames) + frames,
    chunk_offset: (parent.parent?.chunk_offset ?? 0) + Math.ceil(frames / L),
  };
  const job = newJob({
    id, tenant: parent.tenant, manifest: s.m, chunkFrames: L, parent: record, now: new Date(),
    request: { ...parent.request, frames: 3 * L, init_frames: { count: 0, keys: [] } },
  });
  await createJob(s.stack.store, job);
  return { job, plan: jobPlan(job, s.m) };
}
