import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { readJob, createJob } from '../../../shared/jobs/job-store.js';
import { endJob, enqueueChunk, newJob, startJob } from '../../../shared/jobs/lifecycle.js';
import { activeJobKey } from '../../../shared/keys.js';
import { LocalQueue } from '../../../shared/queue/local-queue.js';
import { ChunkTaskSchema } from '../../../shared/schemas/chunk-task.js';
import { WebhookMessageSchema } from '../../../shared/webhooks/message.js';
import { LocalStore } from '../../../shared/store/local-store.js';
import { captureEmf } from '../emf.js';
import { tempDir } from '../../worker/fixtures.js';

function stack() {
  const dir = tempDir();
  return {
    store: new LocalStore({ root: path.join(dir, 'store') }),
    chunkQueue: new LocalQueue({ dir: path.join(dir, 'chunks') }),
    webhookQueue: new LocalQueue({ dir: path.join(dir, 'webhooks') }),
  };
}

const job = (id = 'vid_1') => newJob({
  id,
  tenant: 't1',
  request: { frames: 10, seed: 1, guidance: 2, steps: 2, init_frames: { count: 0, keys: [] }, webhook: 'https://example.com/h', webhook_events_filter: ['completed'] },
  manifest: { name: 'm', onnx_sha256: 'a'.repeat(64), chunk_frames: 4 },
  now: new Date('2030-01-01T00:00:00.000Z'),
});

/** Every message waiting in the queue, taken off it (a FIFO group shows its next one after a delete). */
async function drain(queue: LocalQueue): Promise<unknown[]> {
  const bodies: unknown[] = [];
  for (;;) {
    const got = await queue.receive({ max: 10, visibilitySec: 60 });
    if (got.length === 0) return bodies;
    for (const m of got) {
      bodies.push(JSON.parse(m.body));
      await queue.delete(m.receiptHandle);
    }
  }
}

describe('newJob', () => {
  it('builds a starting record: chunks from the frames and the chunk length, nothing done', () => {
    const j = job();
    expect(j).toMatchObject({ status: 'starting', model: { chunk_frames: 4 }, cancel_requested: false, outputs: {}, metrics: { chunk_seconds: [] } });
    expect(j.progress).toEqual({ chunks_done: 0, chunks_total: 3, frames_done: 0, frames_total: 10 });
    expect(j.created_at).toBe(j.updated_at);
  });
});

describe('startJob and enqueueChunk', () => {
  it('marks the job active and sends chunk 0 once, however often it is repeated', async () => {
    const s = stack();
    const j = (await createJob(s.store, job())).job;
    await startJob(s, j);
    await startJob(s, j);
    expect(await s.store.head(activeJobKey('t1', 'vid_1'))).not.toBeNull();
    const tasks = (await drain(s.chunkQueue)).map((b) => ChunkTaskSchema.parse(b));
    expect(tasks.map((t) => [t.job, t.chunk])).toEqual([['vid_1', 0]]);
  });

  it('sends a retry of the same chunk past the deduplication', async () => {
    const s = stack();
    await enqueueChunk(s.chunkQueue, job(), 1);
    await enqueueChunk(s.chunkQueue, job(), 1);
    await enqueueChunk(s.chunkQueue, job(), 1, { retry: 'reap:1' });
    expect(await drain(s.chunkQueue)).toHaveLength(2);
  });
});

describe('endJob', () => {
  it('ends an unfinished job once: status, completed_at, one count, one completed event', async () => {
    const s = stack();
    await createJob(s.store, job());
    const failure = { status: 'failed', error: { code: 'max_receives', message: 'dead-lettered' } } as const;
    const { metrics } = await captureEmf('Test', async () => {
      await endJob(s, { tenant: 't1', id: 'vid_1' }, failure, () => new Date('2030-01-01T00:01:00.000Z'));
      // A repeat (a retried batch) changes nothing and counts nothing; its event is the same one.
      await endJob(s, { tenant: 't1', id: 'vid_1' }, failure);
    });
    const stored = (await readJob(s.store, 't1', 'vid_1'))!.job;
    expect(stored).toMatchObject({ status: 'failed', error: failure.error, completed_at: '2030-01-01T00:01:00.000Z' });
    expect(metrics.filter((m) => m.name === 'JobsEnded').map((m) => m.dimensions.status)).toEqual(['failed']);
    const events = (await drain(s.webhookQueue)).map((b) => WebhookMessageSchema.parse(b));
    expect(events.map((e) => [e.type, (e.payload as { job: { status: string } }).job.status])).toEqual([['completed', 'failed']]);
  });

  it('leaves a job that ended another way as it is, and sends no event for it', async () => {
    const s = stack();
    await createJob(s.store, { ...job(), status: 'canceled' });
    const { metrics } = await captureEmf('Test', () => endJob(s, { tenant: 't1', id: 'vid_1' }, { status: 'failed', error: { code: 'x', message: 'y' } }));
    expect((await readJob(s.store, 't1', 'vid_1'))!.job).toMatchObject({ status: 'canceled' });
    expect(metrics.filter((m) => m.name === 'JobsEnded')).toEqual([]);
    expect(await drain(s.webhookQueue)).toEqual([]);
  });

  it('sends no event for a repeat that would end the job another way: another status, or a failure with another code', async () => {
    const s = stack();
    const failed = { status: 'failed', error: { code: 'max_receives', message: 'dead-lettered' } } as const;
    await createJob(s.store, { ...job(), status: 'failed', error: failed.error });
    await endJob(s, { tenant: 't1', id: 'vid_1' }, { status: 'succeeded', outputs: { video: 'v.mp4', gif: 'p.gif' } });
    await endJob(s, { tenant: 't1', id: 'vid_1' }, { status: 'failed', error: { code: 'frames_missing', message: 'gone' } });
    expect(await drain(s.webhookQueue)).toEqual([]);
    await endJob(s, { tenant: 't1', id: 'vid_1' }, failed); // the same ending: its event (again)
    expect((await drain(s.webhookQueue)).length).toBe(1);
  });

  it('decides from the stored record: a cancel accepted meanwhile wins over success', async () => {
    const s = stack();
    await createJob(s.store, { ...job(), cancel_requested: true });
    const outputs = { video: 'v.mp4', gif: 'p.gif' };
    await endJob(s, { tenant: 't1', id: 'vid_1' }, (j) => (j.cancel_requested ? { status: 'canceled' } : { status: 'succeeded', outputs }));
    expect((await readJob(s.store, 't1', 'vid_1'))!.job).toMatchObject({ status: 'canceled', outputs: {} });

    await createJob(s.store, job('vid_2'));
    await endJob(s, { tenant: 't1', id: 'vid_2' }, { status: 'succeeded', outputs }, () => new Date('2030-01-01T00:00:12.345Z'));
    expect((await readJob(s.store, 't1', 'vid_2'))!.job).toMatchObject({ status: 'succeeded', outputs, metrics: { total_s: 12.35 } });
  });

  it('ends a job whose creation time is ahead of this clock (clock skew): total_s is 0, never negative', async () => {
    const s = stack();
    await createJob(s.store, job());
    const outputs = { video: 'v.mp4', gif: 'p.gif' };
    await endJob(s, { tenant: 't1', id: 'vid_1' }, { status: 'succeeded', outputs }, () => new Date('2029-12-31T23:59:00.000Z'));
    expect((await readJob(s.store, 't1', 'vid_1'))!.job).toMatchObject({ status: 'succeeded', metrics: { total_s: 0 } });
  });

  it('returns null for a job that is gone', async () => {
    expect(await endJob(stack(), { tenant: 't1', id: 'vid_gone' }, { status: 'canceled' })).toBeNull();
  });
});
