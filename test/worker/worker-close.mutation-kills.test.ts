// ChunkWorker.close() releases the heartbeat: a task a caller still runs through processNext() has
// its lease renewals stopped with the worker (stand-in graph, fast).
import { describe, expect, it } from 'vitest';
import { ChunkWorker } from '../../gpu-worker/worker.js';
import type { TaskQueue } from '../../shared/queue/task-queue.js';
import { localStack, submitJob, tempDir } from './fixtures.js';
import { standIn, TINY_MANIFEST } from './standin.js';

describe('ChunkWorker.close() and the heartbeat', () => {
  it('stops renewing the lease of a task still in flight', async () => {
    let renewals = 0;
    let firstRenewal!: () => void;
    const renewed = new Promise<void>((r) => { firstRenewal = r; });
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    const stack = localStack(tempDir());
    // The chunk's first model call waits until the test lets it go.
    const { model } = standIn(() => held);
    await submitJob(stack, TINY_MANIFEST, { frames: 3, steps: 1 });
    const chunkQueue = Object.assign(Object.create(stack.chunkQueue) as TaskQueue, {
      extendVisibility: async (handle: string, sec: number) => {
        renewals++;
        firstRenewal();
        return stack.chunkQueue.extendVisibility(handle, sec);
      },
    });
    const w = new ChunkWorker({ ...stack, chunkQueue, model, waitSec: 0.1, visibilitySec: 0.1 });
    const task = w.processNext();
    await renewed; // renewed every 50 ms while the chunk runs
    await w.close();
    const atClose = renewals;
    // Four renewal periods later, none more.
    await new Promise((r) => setTimeout(r, 200));
    expect(renewals).toBe(atClose);
    release();
    expect(await task).toBe('computed');
  });
});
