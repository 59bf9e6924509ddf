// The worker's fast test rig: the stand-in step graph (bench/standin-model.ts) at a tiny geometry, so
// that the chunk step and the worker loop run for real (store, queues, cache window, segments,
// frames, HLS, finalize) in milliseconds a chunk, and views of a store and a queue that show what
// the step does to them.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { loadBaseManifest, StandInModel, standInManifest, type Geometry } from '../../bench/standin-model.js';
import type { StepFetch, StepInput } from '../../gpu-worker/model-session.js';
import type { KvData } from '../../shared/cache/segment.js';
import type { TaskQueue } from '../../shared/queue/task-queue.js';
import type { ObjectStore } from '../../shared/store/object-store.js';
import { MODEL_DIR } from './fixtures.js';

/** Two frames a chunk, a window of at most 5: three chunks of a 5-frame job reach P_max with starting frames. */
export const TINY: Geometry = { name: 'tiny', depth: 2, heads: 2, headDim: 4, tokensPerFrame: 3, chunkFrames: 2, pMax: 5 };
export const TINY_MANIFEST = standInManifest(await loadBaseManifest(MODEL_DIR), TINY, { cache_dtype: 'float16' });

const assets = path.resolve(import.meta.dirname, '../../scripts/assets');
/** Three starting frames (PNG) at the test model's frame size. */
export const INIT_PNGS = [0, 1, 2].map((i) => readFileSync(path.join(assets, `demo-init-${i}.png`)));

export interface SeenCall { pos: number; frames: number; cacheFrames: number; rows: number; fetch?: StepFetch }

/** Wider heads and more tokens: a chunk's K/V is 8 MiB (guided), enough to be handed to the hashing thread. */
export const WIDE: Geometry = { ...TINY, name: 'wide', heads: 4, headDim: 64, tokensPerFrame: 1024 };
export const WIDE_MANIFEST = standInManifest(await loadBaseManifest(MODEL_DIR), WIDE, { cache_dtype: 'float16' });

/**
 * The stand-in graph (of `manifest`, TINY's by default); every call is noted in `calls`, every
 * cache-write pass's K/V in `kvs`, and `before` runs first (it may throw or wait).
 */
export function standIn(before?: (input: StepInput, fetch?: StepFetch) => void | Promise<void>, manifest = TINY_MANIFEST) {
  const model = new StandInModel(manifest, 0);
  const calls: SeenCall[] = [];
  const kvs: KvData[] = [];
  const step = model.step.bind(model);
  model.step = (async (input: StepInput, fetch?: StepFetch) => {
    calls.push({ pos: input.pos, frames: input.frames, cacheFrames: input.cacheFrames, rows: input.rows, fetch });
    await before?.(input, fetch);
    if (!fetch) return step(input);
    const out = await step(input, fetch);
    if (out.kv) kvs.push(out.kv);
    return out;
  }) as typeof model.step;
  return { model, calls, kvs };
}

export interface StoreWatch {
  /** Keys of cache segments read (ranged reads), in order. */
  cacheReads: string[];
  /** Content type of each object put, by key. */
  contentTypes: Record<string, string | undefined>;
  /** Runs before each put, with its key; may wait or throw. */
  beforePut?: (key: string) => void | Promise<void>;
  /** Runs after each put that succeeded, with its key. */
  afterPut?: (key: string) => void;
}

/** `store` with its cache reads counted and hooks around each put. */
export function watchedStore(store: ObjectStore, watch: StoreWatch): ObjectStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'readRange') {
        return (key: string, start: number, into: Uint8Array) => {
          if (key.includes('/cache/')) watch.cacheReads.push(key);
          return target.readRange(key, start, into);
        };
      }
      if (prop === 'put') {
        return async (...args: Parameters<ObjectStore['put']>) => {
          watch.contentTypes[args[0]] = args[2]?.contentType;
          await watch.beforePut?.(args[0]);
          const out = await target.put(...args);
          watch.afterPut?.(args[0]);
          return out;
        };
      }
      return Reflect.get(target, prop, receiver);
    },
  });
}

/** `queue` with every message it was asked to send noted in `sent` (parsed), deduplicated or not. */
export function recordingQueue(queue: TaskQueue, sent: Record<string, unknown>[]): TaskQueue {
  return new Proxy(queue, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver);
      return (body: string, opts: Parameters<TaskQueue['send']>[1]) => {
        sent.push(JSON.parse(body) as Record<string, unknown>);
        return target.send(body, opts);
      };
    },
  });
}
