import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { VisibilityHeartbeat } from '../../gpu-worker/heartbeat.js';
import { ReceiptHandleInvalidError } from '../../shared/queue/errors.js';
import { LocalQueue } from '../../shared/queue/local-queue.js';
import type { TaskQueue } from '../../shared/queue/task-queue.js';
import { tempDir } from './fixtures.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A real embedded queue whose renewals fail with a transient error while `failing` is set. */
async function flakyQueue() {
  const queue = new LocalQueue({ dir: path.join(tempDir(), 'q') });
  await queue.send('{}', { groupId: 'g', dedupId: 'd' });
  const [message] = await queue.receive({ max: 1, visibilitySec: 30 });
  const state = { failing: 0, renewals: 0 };
  const flaky = Object.assign(Object.create(queue) as TaskQueue, {
    extendVisibility: async (handle: string, sec: number) => {
      state.renewals++;
      if (state.failing > 0) { state.failing--; throw new Error('throttled'); }
      return queue.extendVisibility(handle, sec);
    },
  });
  return { queue, flaky, handle: message!.receiptHandle, state };
}

describe('visibility heartbeat', () => {
  it('rides out a transient renewal error and keeps renewing', async () => {
    const { flaky, handle, state } = await flakyQueue();
    const heartbeat = new VisibilityHeartbeat(flaky, 0.4);   // renews every 200 ms, retries after 50 ms
    const lost: unknown[] = [];
    heartbeat.on('lost', (_h, e) => lost.push(e));
    state.failing = 1;
    heartbeat.track(handle);
    await sleep(700);
    heartbeat.close();
    expect(lost).toEqual([]);
    expect(state.renewals).toBeGreaterThanOrEqual(3);   // the failed one, its retry, later ones
  });

  it('reports the lease lost when the receipt is stale', async () => {
    const { queue, handle } = await flakyQueue();
    await queue.delete(handle);
    const heartbeat = new VisibilityHeartbeat(queue, 0.4);
    const lost = new Promise<unknown>((resolve) => heartbeat.on('lost', (_h, e) => resolve(e)));
    heartbeat.track(handle);
    expect(await lost).toBeInstanceOf(ReceiptHandleInvalidError);
    heartbeat.close();
  });

  it('reports the lease lost when renewals keep failing until it would have run out', async () => {
    const { flaky, handle, state } = await flakyQueue();
    state.failing = 1000;
    const heartbeat = new VisibilityHeartbeat(flaky, 0.4);
    const started = Date.now();
    const lost = new Promise<unknown>((resolve) => heartbeat.on('lost', (_h, e) => resolve(e)));
    heartbeat.track(handle);
    expect(String(await lost)).toContain('throttled');
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);   // not at the first failure (200 ms)
    heartbeat.close();
  });
});
