import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createVideo, getVideo } from '../../shared/api/videos.js';
import { NotFoundError } from '../../shared/api/errors.js';
import type { ApiDeps } from '../../shared/api/types.js';
import { ChunkTaskSchema } from '../../shared/schemas/chunk-task.js';
import { tempStack, testConfig, testManifest, type TempStack } from './helpers.js';

let stack: TempStack;
let deps: ApiDeps;
beforeEach(async () => {
  stack = await tempStack();
  deps = { store: stack.store, chunkQueue: stack.chunkQueue, manifest: testManifest(), config: testConfig() };
});
afterEach(() => stack.cleanup());

const ctx = (tenant: string) => ({ tenant, baseUrl: 'http://api.test' });

/** Every chunk task waiting in the queue (received and deleted). */
async function drainTasks() {
  const tasks = [];
  for (;;) {
    const [m] = await stack.chunkQueue.receive({ max: 1, visibilitySec: 30 });
    if (!m) return tasks;
    tasks.push(ChunkTaskSchema.parse(JSON.parse(m.body)));
    await stack.chunkQueue.delete(m.receiptHandle);
  }
}

describe('Idempotency-Key is scoped to the tenant', () => {
  it('two tenants sending the same key and body each get their own job, and both jobs start', async () => {
    const body = { frames: 8, seed: 3 };
    const a = await createVideo(deps, ctx('tenant-a'), { body, idempotencyKey: 'order-42' });
    const b = await createVideo(deps, ctx('tenant-b'), { body, idempotencyKey: 'order-42' });
    expect(a.created).toBe(true);
    expect(b.created).toBe(true);
    // Job ids are global in the chunk queue (FIFO group and dedup id): one key must not map two tenants to one id.
    expect(b.job.id).not.toBe(a.job.id);
    const tasks = await drainTasks();
    expect(tasks.map((t) => `${t.tenant}/${t.job}/${t.chunk}`).sort()).toEqual([`tenant-a/${a.job.id}/0`, `tenant-b/${b.job.id}/0`]);
    // And each tenant sees only its own job.
    expect((await getVideo(deps, ctx('tenant-b'), b.job.id)).id).toBe(b.job.id);
    await expect(getVideo(deps, ctx('tenant-b'), a.job.id)).rejects.toBeInstanceOf(NotFoundError);
  });

  it('the same tenant repeating the key gets the same job back and no second task (the control)', async () => {
    const body = { frames: 8, seed: 3 };
    const first = await createVideo(deps, ctx('tenant-a'), { body, idempotencyKey: 'order-42' });
    const again = await createVideo(deps, ctx('tenant-a'), { body, idempotencyKey: 'order-42' });
    expect(again).toMatchObject({ created: false, job: { id: first.job.id } });
    expect((await drainTasks()).map((t) => t.job)).toEqual([first.job.id]);
  });
});
