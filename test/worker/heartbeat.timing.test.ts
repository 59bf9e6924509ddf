// The heartbeat's schedule to the millisecond, on a fake clock: renewals every half window, retries
// every eighth, the lease given up exactly when it would have run out, and nothing after untrack.
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { VisibilityHeartbeat } from '../../gpu-worker/heartbeat.js';
import { ReceiptHandleInvalidError } from '../../shared/queue/errors.js';
import { LocalQueue } from '../../shared/queue/local-queue.js';
import type { TaskQueue } from '../../shared/queue/task-queue.js';
import { tempDir } from './fixtures.js';

/** An embedded queue whose renewals are recorded (at the fake clock's time) and answered by `answer`. */
function recordingQueue(answer: (call: number) => Error | undefined = () => undefined) {
  const queue = new LocalQueue({ dir: path.join(tempDir(), 'q') });
  const calls: { at: number; handle: string; sec: number }[] = [];
  const recording = Object.assign(Object.create(queue) as TaskQueue, {
    extendVisibility: async (handle: string, sec: number) => {
      calls.push({ at: Date.now(), handle, sec });
      const err = answer(calls.length);
      if (err) throw err;
    },
  });
  return { queue: recording, calls };
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval', 'clearInterval', 'clearTimeout', 'Date'] });
  vi.setSystemTime(0);
});
afterEach(() => {
  vi.useRealTimers();
});

describe('visibility heartbeat schedule', () => {
  it('renews every half window, for the whole window', async () => {
    const { queue, calls } = recordingQueue();
    const heartbeat = new VisibilityHeartbeat(queue, 10);
    heartbeat.track('h1');
    await vi.advanceTimersByTimeAsync(4_999);
    expect(calls).toEqual([]);
    await vi.advanceTimersByTimeAsync(10_001);
    expect(calls).toEqual([5_000, 10_000, 15_000].map((at) => ({ at, handle: 'h1', sec: 10 })));
    heartbeat.close();
  });

  it('retries a failed renewal an eighth of a window later, then renews on schedule', async () => {
    const { queue, calls } = recordingQueue((n) => (n === 1 ? new Error('throttled') : undefined));
    const heartbeat = new VisibilityHeartbeat(queue, 10);
    const lost = vi.fn();
    heartbeat.on('lost', lost);
    heartbeat.track('h1');
    await vi.advanceTimersByTimeAsync(10_000);
    expect(calls.map((c) => c.at)).toEqual([5_000, 6_250, 10_000]);
    expect(lost).not.toHaveBeenCalled();
    heartbeat.close();
  });

  it('gives the lease up exactly when one more retry would come after it ran out', async () => {
    const { queue, calls } = recordingQueue(() => new Error('throttled'));
    const heartbeat = new VisibilityHeartbeat(queue, 10);
    const lost = vi.fn();
    heartbeat.on('lost', lost);
    heartbeat.track('h1');
    await vi.advanceTimersByTimeAsync(8_749);
    expect(lost).not.toHaveBeenCalled();
    // 5 s fails, retries at 6.25 and 7.5 s fail; at 8.75 s the next retry (10 s) would be too late.
    await vi.advanceTimersByTimeAsync(1);
    expect(calls.map((c) => c.at)).toEqual([5_000, 6_250, 7_500, 8_750]);
    expect(lost).toHaveBeenCalledTimes(1);
    expect(lost.mock.calls[0][0]).toBe('h1');
    expect(String(lost.mock.calls[0][1])).toContain('throttled');
    await vi.advanceTimersByTimeAsync(20_000);
    expect(calls).toHaveLength(4); // untracked: no renewals after the loss
    heartbeat.close();
  });

  it('counts from the last renewal that succeeded', async () => {
    const { queue, calls } = recordingQueue((n) => (n >= 2 ? new Error('throttled') : undefined));
    const heartbeat = new VisibilityHeartbeat(queue, 10);
    const lost = vi.fn();
    heartbeat.on('lost', lost);
    heartbeat.track('h1');
    await vi.advanceTimersByTimeAsync(13_749);
    expect(lost).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(lost).toHaveBeenCalledTimes(1); // renewed at 5 s: 13.75 + 1.25 >= 15
    expect(calls[0].at).toBe(5_000);
    heartbeat.close();
  });

  it('gives up at once on a stale receipt, and stops renewing it', async () => {
    const { queue, calls } = recordingQueue(() => new ReceiptHandleInvalidError('stale'));
    const heartbeat = new VisibilityHeartbeat(queue, 10);
    const lost = vi.fn();
    heartbeat.on('lost', lost);
    heartbeat.track('h1');
    await vi.advanceTimersByTimeAsync(5_000);
    expect(lost).toHaveBeenCalledTimes(1);
    expect(lost.mock.calls[0][1]).toBeInstanceOf(ReceiptHandleInvalidError);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(calls).toHaveLength(1);
  });

  it('neither retries nor reports a message untracked while its renewal was failing', async () => {
    let fail!: (err: Error) => void;
    const queue = recordingQueue().queue;
    const calls: number[] = [];
    queue.extendVisibility = () => {
      calls.push(Date.now());
      return new Promise<void>((_, reject) => { fail = reject; });
    };
    const heartbeat = new VisibilityHeartbeat(queue, 10);
    const lost = vi.fn();
    heartbeat.on('lost', lost);
    heartbeat.track('h1');
    await vi.advanceTimersByTimeAsync(5_000);
    heartbeat.untrack('h1');
    fail(new ReceiptHandleInvalidError('stale'));
    await vi.advanceTimersByTimeAsync(20_000);
    expect(lost).not.toHaveBeenCalled();
    expect(calls).toEqual([5_000]);
  });

  it('drops a pending retry once the message is untracked', async () => {
    const { queue, calls } = recordingQueue(() => new Error('throttled'));
    const heartbeat = new VisibilityHeartbeat(queue, 10);
    heartbeat.track('h1');
    await vi.advanceTimersByTimeAsync(5_500);
    heartbeat.untrack('h1');
    await vi.advanceTimersByTimeAsync(20_000);
    expect(calls.map((c) => c.at)).toEqual([5_000]);
  });

  it('tracks a handle once however often it is tracked, and close stops every handle', async () => {
    const { queue, calls } = recordingQueue();
    const heartbeat = new VisibilityHeartbeat(queue, 10);
    heartbeat.track('h1');
    await vi.advanceTimersByTimeAsync(2_000);
    heartbeat.track('h1'); // tracked anew: the schedule restarts
    heartbeat.track('h2');
    await vi.advanceTimersByTimeAsync(5_000);
    expect(calls).toEqual([{ at: 7_000, handle: 'h1', sec: 10 }, { at: 7_000, handle: 'h2', sec: 10 }]);
    heartbeat.close();
    await vi.advanceTimersByTimeAsync(20_000);
    expect(calls).toHaveLength(2);
  });
});
