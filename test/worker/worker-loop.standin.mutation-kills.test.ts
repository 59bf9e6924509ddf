// The worker loop on paths that compute chunks, with the stand-in graph (fast): the window memo it
// keeps or not, segments stored after the task, close() draining the chunk in flight and the
// segment writes, a lost lease aborting only its own chunk, failures it cannot record, and what it
// reports per task.
import { describe, expect, it, vi } from 'vitest';
import { log } from '../../gpu-worker/log.js';
import { ChunkWorker, type TaskEvent, type WorkerOptions } from '../../gpu-worker/worker.js';
import { readJob, updateJob } from '../../shared/jobs/job-store.js';
import { cacheSegmentKey, jobKey } from '../../shared/keys.js';
import { ReceiptHandleInvalidError } from '../../shared/queue/errors.js';
import type { ReceiveOptions, TaskQueue } from '../../shared/queue/task-queue.js';
import type { Job } from '../../shared/schemas/job.js';
import { localStack, submitJob, tempDir } from './fixtures.js';
import { standIn, TINY_MANIFEST, watchedStore, type StoreWatch } from './standin.js';

type Stack = ReturnType<typeof localStack>;

async function setup(opts: { frames?: number; before?: Parameters<typeof standIn>[0] } = {}) {
  const stack = localStack(tempDir());
  const { model, calls } = standIn(opts.before);
  const job = await submitJob(stack, TINY_MANIFEST, { frames: opts.frames ?? 5, steps: 2 });
  const watch: StoreWatch = { cacheReads: [], contentTypes: {} };
  const store = watchedStore(stack.store, watch);
  const events: TaskEvent[] = [];
  const worker = (extra: Partial<WorkerOptions> = {}) => new ChunkWorker({ ...stack, store, model, waitSec: 0.1, onTask: (e) => events.push(e), ...extra });
  return { stack, model, calls, job, watch, events, worker };
}

const stored = async (stack: Stack, job: Job) => (await readJob(stack.store, job.tenant, job.id))!.job;

describe('ChunkWorker: the window memo', () => {
  it('keeps each job\'s window by default: no chunk reads its window back', async () => {
    const { job, stack, watch, worker } = await setup({ frames: 7 });
    const w = worker();
    const reads: number[] = [];
    for (let k = 0; k < 3; k++) {
      expect(await w.processNext()).toBe('computed');
      reads.push(watch.cacheReads.length);
    }
    expect(reads).toEqual([0, 0, 0]);
    expect(await w.processNext()).toBe('finalized');
    expect((await stored(stack, job)).status).toBe('succeeded');
    await w.close();
  });

  it('with a budget of 0 reads every window back, and says nothing about windows it will not keep', async () => {
    const { watch, worker } = await setup({ frames: 7 });
    const errors = vi.spyOn(log, 'error');
    try {
      const w = worker({ windowMemoBytes: 0 });
      const reads: number[] = [];
      for (let k = 0; k < 3; k++) {
        expect(await w.processNext()).toBe('computed');
        reads.push(watch.cacheReads.length);
      }
      expect(reads[0]).toBe(0);
      expect(reads[1]).toBeGreaterThan(0);
      expect(reads[2]).toBeGreaterThan(reads[1]);
      expect(errors).not.toHaveBeenCalled();
      await w.close();
    } finally {
      errors.mockRestore();
    }
  });
});

describe('ChunkWorker: segments stored after the task', () => {
  /** Holds every cache segment put until `release()`; `order` notes when the task returned and when the segment landed. */
  function holding(watch: StoreWatch) {
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    const order: string[] = [];
    watch.beforePut = async (key) => { if (key.includes('/cache/')) await held; };
    watch.afterPut = (key) => { if (key.includes('/cache/')) order.push('stored'); };
    return { release, order };
  }

  it('stores a segment at or above the threshold it was given after the task returns, and close() waits for it', async () => {
    const { job, stack, watch, worker } = await setup();
    const { release, order } = holding(watch);
    const w = worker({ deferSegmentBytes: 1 });
    expect(await w.processNext()).toBe('computed');
    order.push('returned');
    const closing = w.close();
    setImmediate(release);
    await closing;
    expect(order).toEqual(['returned', 'stored']);
    expect(await stack.store.head(cacheSegmentKey(job.tenant, job.id, 0))).not.toBeNull();
  });

  it('stores a small segment (below the default 8 MiB) before the task returns', async () => {
    const { watch, worker } = await setup();
    const { release, order } = holding(watch);
    const w = worker();
    const fallback = setTimeout(release, 200);
    expect(await w.processNext()).toBe('computed');
    order.push('returned');
    clearTimeout(fallback);
    release();
    await w.close();
    expect(order).toEqual(['stored', 'returned']);
  });

  it('deletes each task once: as soon as its chunk is recorded, before its t = 0 pass and background segment end', async () => {
    for (const background of [true, false]) {
      const deletes: string[] = [];
      const order: string[] = [];
      /** Resolves once the task is deleted, or after 2 s (a worker that waits for the pass or the segment first). */
      const deletedOr2s = () => new Promise<void>((res) => {
        const poll = setInterval(() => { if (deletes.length) done(); }, 5);
        const fallback = setTimeout(() => done(), 2000);
        const done = () => { clearInterval(poll); clearTimeout(fallback); res(); };
      });
      const { stack, watch, worker } = await setup({ before: async (_, fetch) => {
        if (fetch !== 'kv') return;
        if (background) await deletedOr2s();
        order.push('t = 0 pass');
      } });
      watch.beforePut = async (key) => { if (key.includes('/cache/') && background) await deletedOr2s(); };
      watch.afterPut = (key) => { if (key.includes('/cache/')) order.push('stored'); };
      const chunkQueue = new Proxy(stack.chunkQueue, {
        get: (target, prop, receiver) => prop !== 'delete' ? Reflect.get(target, prop, receiver) : (receipt: string) => {
          deletes.push(receipt);
          order.push('deleted');
          return target.delete(receipt);
        },
      });
      const w = worker({ chunkQueue, deferSegmentBytes: background ? 1 : undefined });
      expect(await w.processNext()).toBe('computed');
      await w.close();
      expect(deletes).toHaveLength(1);
      expect(order, background ? 'background' : 'inline').toEqual(background ? ['deleted', 't = 0 pass', 'stored'] : ['t = 0 pass', 'stored', 'deleted']);
    }
  });
});

describe('ChunkWorker.close()', () => {
  it('lets the chunk in flight finish before it resolves', async () => {
    let inFlight!: () => void;
    const started = new Promise<void>((r) => { inFlight = r; });
    const { job, stack, worker, events } = await setup({ before: () => inFlight() });
    const w = worker();
    const running = w.run();
    await started;
    await w.close();
    expect(events.map((e) => e.outcome)).toEqual(['computed']);
    expect((await stored(stack, job)).progress.chunks_done).toBe(1);
    await running;
  });

  it('receives with the long poll it was given, 2 s by default', async () => {
    for (const [waitSec, want] of [[0.05, 0.05], [undefined, 2]] as const) {
      const stack = localStack(tempDir());
      const seen: ReceiveOptions[] = [];
      let w!: ChunkWorker;
      const chunkQueue = Object.assign(Object.create(stack.chunkQueue) as TaskQueue, {
        receive: async (opts: ReceiveOptions) => { seen.push(opts); void w.close(); return []; },
      });
      const { model } = standIn();
      w = new ChunkWorker({ ...stack, chunkQueue, model, waitSec, visibilitySec: 9 });
      await w.run();
      await w.close();
      expect(seen).toEqual([{ max: 1, visibilitySec: 9, waitSec: want }]);
    }
  });
});

describe('ChunkWorker: a lost lease', () => {
  it('aborts the chunk of the task whose lease was lost, and only that one', async () => {
    let lost!: () => void;
    const lostFired = new Promise<void>((r) => { lost = r; });
    const stack = localStack(tempDir());
    // Every model call waits for the lease to be lost, so both chunks are in flight when it is.
    const { model } = standIn(async () => { await lostFired; await new Promise((r) => setTimeout(r, 20)); });
    const a = await submitJob(stack, TINY_MANIFEST, { frames: 5, steps: 2 });
    const b = await submitJob(stack, TINY_MANIFEST, { frames: 5, steps: 2 });
    let doomed: string | undefined;
    const chunkQueue = Object.assign(Object.create(stack.chunkQueue) as TaskQueue, {
      receive: async (opts: ReceiveOptions) => {
        const got = await stack.chunkQueue.receive(opts);
        doomed ??= got[0]?.receiptHandle;
        return got;
      },
      extendVisibility: async (handle: string, sec: number) => {
        if (handle !== doomed) return stack.chunkQueue.extendVisibility(handle, sec);
        lost();
        throw new ReceiptHandleInvalidError(handle);
      },
    });
    const events: TaskEvent[] = [];
    const w = new ChunkWorker({ ...stack, chunkQueue, model, waitSec: 0.1, visibilitySec: 0.2, onTask: (e) => events.push(e) });
    const outcomes = await Promise.all([w.processNext(), w.processNext()]);
    await w.close();
    expect(outcomes).toEqual(['retry', 'computed']);
    const jobs = await Promise.all([stored(stack, a), stored(stack, b)]);
    const abortedJob = events.find((e) => e.outcome === 'retry')!.task.job;
    expect(jobs.find((j) => j.id === abortedJob)!.progress.chunks_done).toBe(0);
    expect(jobs.find((j) => j.id !== abortedJob)!.progress.chunks_done).toBe(1);
    expect(events.find((e) => e.outcome === 'retry')!.error).toContain('ReceiptHandleInvalidError');
  });
});

describe('ChunkWorker: failures', () => {
  it('leaves a failing task for redelivery when the failure cannot be recorded', async () => {
    const { job, stack, watch, worker, events } = await setup();
    await updateJob(stack.store, job.tenant, job.id, (j) => ({ ...j, model: { ...j.model, sha256: 'b'.repeat(64) } }));
    watch.beforePut = (key) => { if (key === jobKey(job.tenant, job.id)) throw new Error('store unavailable'); };
    const w = worker();
    expect(await w.processNext()).toBe('retry');
    expect(events.map((e) => e.outcome)).toEqual(['retry']);
    expect(events[0].error).toContain('accepted for model');
    expect((await stored(stack, job)).status).toBe('starting');
    expect(await stack.chunkQueue.depth()).toBe(1);
    await w.close();
  });

  it('logs an unknown failure as an error and a chunk out of order as a warning, and keeps both tasks', async () => {
    const one = await setup();
    const other = await setup();
    const errors = vi.spyOn(log, 'error').mockImplementation(() => {});
    const warnings = vi.spyOn(log, 'warn').mockImplementation(() => {});
    try {
      const broken = Object.assign(Object.create(one.stack.store), { get: () => Promise.reject(new Error('disk gone')) });
      expect(await one.worker({ store: broken }).processNext()).toBe('retry');
      expect(errors.mock.calls.map(([m]) => m)).toEqual(['chunk task failed, will be retried']);
      expect(warnings).not.toHaveBeenCalled();
      errors.mockClear();
      // Chunk 1 before chunk 0 is recorded.
      const { job, stack, worker } = other;
      const [first] = await stack.chunkQueue.receive({ max: 1, visibilitySec: 60 });
      await stack.chunkQueue.delete(first.receiptHandle);
      await stack.chunkQueue.send(JSON.stringify({ job: job.id, tenant: job.tenant, chunk: 1 }), { groupId: job.id, dedupId: 'c1' });
      expect(await worker().processNext()).toBe('retry');
      expect(warnings.mock.calls.map(([m]) => m)).toEqual(['chunk out of order, left for redelivery']);
      expect(errors).not.toHaveBeenCalled();
      expect(await stack.chunkQueue.depth()).toBe(1);
    } finally {
      errors.mockRestore();
      warnings.mockRestore();
    }
  });
});

describe('ChunkWorker: what it reports per task', () => {
  it('logs the task done with its job, chunk and receive count, and reports its seconds', async () => {
    const { job, worker, events } = await setup();
    const infos = vi.spyOn(log, 'info');
    try {
      const w = worker();
      const before = performance.now();
      expect(await w.processNext()).toBe('computed');
      const wall = (performance.now() - before) / 1000;
      const done = infos.mock.calls.find(([m]) => m === 'chunk task done');
      expect(done?.[1]).toMatchObject({ job: job.id, chunk: 0, receive_count: 1, outcome: 'computed' });
      expect(events[0].seconds).toBeGreaterThan(0);
      expect(events[0].seconds).toBeLessThanOrEqual(wall + 0.001);
      await w.close();
    } finally {
      infos.mockRestore();
    }
  });
});
