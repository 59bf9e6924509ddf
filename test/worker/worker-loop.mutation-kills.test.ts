// The worker loop around the chunk step, on paths that settle a task before any denoising: a
// malformed task, a job gone, a job that fails, a chunk out of order, receive errors, the receive
// options, scale-in protection around each task, and the worker's own lifecycle.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { log } from '../../gpu-worker/log.js';
import { ModelSession } from '../../gpu-worker/model-session.js';
import { TaskProtection } from '../../gpu-worker/task-protection.js';
import { ChunkWorker, type TaskEvent } from '../../gpu-worker/worker.js';
import { readJob, updateJob } from '../../shared/jobs/job-store.js';
import type { ReceiveOptions, TaskQueue } from '../../shared/queue/task-queue.js';
import { localStack, MODEL_DIR, submitJob, tempDir } from './fixtures.js';

let model: ModelSession;
beforeAll(async () => { model = await ModelSession.open(MODEL_DIR); });
afterAll(async () => { await model.release(); });

const WEBHOOK = 'https://hooks.example.com/ca2vdm';

/** Every message body in `queue` (received and put back at once). */
async function bodies(queue: TaskQueue): Promise<unknown[]> {
  const got = await queue.receive({ max: 10, visibilitySec: 1 });
  await Promise.all(got.map((m) => queue.extendVisibility(m.receiptHandle, 0).catch(() => undefined)));
  return got.map((m) => JSON.parse(m.body));
}

function worker(stack: Pick<ReturnType<typeof localStack>, 'store' | 'webhookQueue'> & { chunkQueue: TaskQueue }, extra: Partial<ConstructorParameters<typeof ChunkWorker>[0]> = {}) {
  const events: TaskEvent[] = [];
  const w = new ChunkWorker({ ...stack, model, waitSec: 0.2, windowMemoBytes: 0, onTask: (e) => events.push(e), ...extra });
  return { w, events };
}

describe('ChunkWorker: tasks settled before any denoising', () => {
  it('drops a malformed task: deleted, reported failed', async () => {
    const stack = localStack(tempDir());
    await stack.chunkQueue.send('{"job": 1', { groupId: 'g', dedupId: 'bad' });
    const { w, events } = worker(stack);
    expect(await w.processNext()).toBe('failed');
    expect(await stack.chunkQueue.depth()).toBe(0);
    expect(events).toEqual([]); // no task to report: it never parsed
  });

  it('deletes the task of a job that is gone (skipped)', async () => {
    const stack = localStack(tempDir());
    await stack.chunkQueue.send(JSON.stringify({ job: 'nojob', tenant: 'tenant1', chunk: 0 }), { groupId: 'nojob', dedupId: 'n0' });
    const { w, events } = worker(stack);
    expect(await w.processNext()).toBe('skipped');
    expect(await stack.chunkQueue.depth()).toBe(0);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ task: { job: 'nojob', chunk: 0 }, outcome: 'skipped' });
    expect(events[0].error).toBeUndefined();
  });

  it('fails the job with the chunk failure\'s code and message, sends the completed event, deletes the task', async () => {
    const stack = localStack(tempDir());
    const job = await submitJob(stack, model.manifest, { webhook: WEBHOOK });
    // Accepted in chunks longer than this model serves: the chunk step fails it before computing.
    await updateJob(stack.store, job.tenant, job.id, (j) => { j.model.chunk_frames = 99; return j; });
    const { w, events } = worker(stack);
    expect(await w.processNext()).toBe('failed');
    const stored = (await readJob(stack.store, job.tenant, job.id))!.job;
    expect(stored.status).toBe('failed');
    expect(stored.error).toEqual({ code: 'model_mismatch', message: 'job was accepted in chunks of 99 frames; this model serves at most 4' });
    expect(Date.parse(stored.completed_at!)).toBeGreaterThan(0);
    expect(await stack.chunkQueue.depth()).toBe(0);
    expect(events[0]).toMatchObject({ outcome: 'failed', error: expect.stringContaining('chunks of 99 frames') });
    const sent = await bodies(stack.webhookQueue);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ type: 'completed', job_id: job.id, payload: { job: { status: 'failed' } } });
  });

  it('leaves a chunk that came before its turn for redelivery (retry), the job untouched', async () => {
    const stack = localStack(tempDir());
    const job = await submitJob(stack, model.manifest, { webhook: WEBHOOK });
    const [first] = await stack.chunkQueue.receive({ max: 1, visibilitySec: 60 });
    await stack.chunkQueue.delete(first.receiptHandle); // chunk 0's task is gone; chunk 2's arrives
    await stack.chunkQueue.send(JSON.stringify({ job: job.id, tenant: job.tenant, chunk: 2 }), { groupId: job.id, dedupId: 'c2' });
    const { w, events } = worker(stack, { visibilitySec: 1 });
    expect(await w.processNext()).toBe('retry');
    expect(events[0]).toMatchObject({ outcome: 'retry', error: expect.stringContaining('chunk 2') });
    expect((await readJob(stack.store, job.tenant, job.id))!.job.status).toBe('starting');
    expect(await stack.chunkQueue.depth()).toBe(1); // kept
    expect(await bodies(stack.webhookQueue)).toEqual([]); // no start event: chunk 0 never ran
  });

  it('keeps receiving after receive errors, backing off', async () => {
    const stack = localStack(tempDir());
    let failures = 2;
    const chunkQueue = Object.assign(Object.create(stack.chunkQueue) as TaskQueue, {
      receive: (opts: ReceiveOptions) => (failures-- > 0 ? Promise.reject(new Error('network down')) : stack.chunkQueue.receive(opts)),
    });
    await stack.chunkQueue.send(JSON.stringify({ job: 'gone', tenant: 'tenant1', chunk: 0 }), { groupId: 'gone', dedupId: 'g0' });
    const warned = vi.spyOn(log, 'warn');
    const { w, events } = worker({ ...stack, chunkQueue });
    const started = Date.now();
    const running = w.run();
    while (events.length === 0 && Date.now() - started < 20_000) await new Promise((r) => setTimeout(r, 50));
    await w.close();
    await running;
    const backoffs = warned.mock.calls.filter(([m]) => m === 'receive failed, retrying').map(([, f]) => f?.backoff_ms);
    warned.mockRestore();
    expect(events.map((e) => e.outcome)).toEqual(['skipped']);
    expect(backoffs).toEqual([500, 1_000]); // 0.5 s, then twice that
  });

  it('receives one task at a time, with the visibility it renews and the long poll it was given (defaults 60 s, 2 s)', async () => {
    const stack = localStack(tempDir());
    const seen: ReceiveOptions[] = [];
    const chunkQueue = Object.assign(Object.create(stack.chunkQueue) as TaskQueue, {
      receive: (opts: ReceiveOptions) => { seen.push(opts); return stack.chunkQueue.receive({ ...opts, waitSec: 0 }); },
    });
    await new ChunkWorker({ ...stack, chunkQueue, model, windowMemoBytes: 0 }).processNext();
    await new ChunkWorker({ ...stack, chunkQueue, model, windowMemoBytes: 0, visibilitySec: 7, waitSec: 3 }).processNext();
    expect(seen).toEqual([{ max: 1, visibilitySec: 60, waitSec: 2 }, { max: 1, visibilitySec: 7, waitSec: 3 }]);
  });
});

describe('ChunkWorker: scale-in protection around each task', () => {
  let server: Server;
  const puts: unknown[] = [];
  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => {
        puts.push({ method: req.method, url: req.url, body: JSON.parse(body) });
        res.end('{}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('protects the task while it runs and releases it after, even when it fails', async () => {
    const stack = localStack(tempDir());
    const agent = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await stack.chunkQueue.send(JSON.stringify({ job: 'gone', tenant: 'tenant1', chunk: 0 }), { groupId: 'gone', dedupId: 'p0' });
    const { w } = worker(stack, { protection: new TaskProtection(agent, 12) });
    expect(await w.processNext()).toBe('skipped');
    expect(puts).toEqual([
      { method: 'PUT', url: '/task-protection/v1/state', body: { ProtectionEnabled: true, ExpiresInMinutes: 12 } },
      { method: 'PUT', url: '/task-protection/v1/state', body: { ProtectionEnabled: false } },
    ]);
  });
});

describe('ChunkWorker lifecycle', () => {
  it('runs once, and close is one promise however often it is called', async () => {
    const stack = localStack(tempDir());
    const { w } = worker(stack);
    const running = w.run();
    expect(() => w.run()).toThrow('ChunkWorker.run() called twice');
    const closing = w.close();
    expect(w.close()).toBe(closing);
    await closing;
    await running;
  });

  it('closes a worker that never ran', async () => {
    const { w } = worker(localStack(tempDir()));
    await w.close();
  });

  it('releases the model on close only when it owns it', async () => {
    const other = await ModelSession.open(MODEL_DIR);
    let released = 0;
    const release = other.release.bind(other);
    other.release = async () => { released++; await release(); };
    await new ChunkWorker({ ...localStack(tempDir()), model: other, windowMemoBytes: 0 }).close();
    expect(released).toBe(0);
    await new ChunkWorker({ ...localStack(tempDir()), model: other, windowMemoBytes: 0, ownsModel: true }).close();
    expect(released).toBe(1);
  });
});
