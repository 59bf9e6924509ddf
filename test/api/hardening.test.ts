import { deflateSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IdempotencyConflictError, ValidationError } from '../../shared/api/errors.js';
import type { ApiDeps, CallContext } from '../../shared/api/types.js';
import { createVideo, listVideos } from '../../shared/api/videos.js';
import { testConfig, testManifest, tempStack, type TempStack } from './helpers.js';

let stack: TempStack;
let deps: ApiDeps;
const ctx: CallContext = { tenant: 'tenant1', baseUrl: 'http://127.0.0.1:8080' };
beforeEach(async () => {
  stack = await tempStack();
  deps = { store: stack.store, chunkQueue: stack.chunkQueue, manifest: testManifest(), config: testConfig() };
});
afterEach(async () => { await stack.cleanup(); });

describe('a client id that names an existing job', () => {
  it('is refused every time, and a refused request writes nothing that a repeat could replay', async () => {
    const first = await createVideo(deps, ctx, { body: { frames: 8, seed: 1 } });
    const id = first.job.id;
    const before = await stack.store.list(`jobs/${ctx.tenant}/${id}/`);
    const other = { frames: 16, seed: 2, id };
    await expect(createVideo(deps, ctx, { body: other })).rejects.toThrow(IdempotencyConflictError);
    expect(await stack.store.list(`jobs/${ctx.tenant}/${id}/`)).toEqual(before);
    await expect(createVideo(deps, ctx, { body: other })).rejects.toThrow(IdempotencyConflictError);
  });

  it('is refused even where a crashed earlier try of the same request left its idempotency record', async () => {
    const other = { frames: 16, seed: 2, id: 'taken-1' };
    // The first try stops right after its record is written (job.json never lands)...
    const crashing = Object.create(stack.store) as typeof stack.store;
    crashing.put = (key, ...rest) => (key.endsWith('/job.json') ? Promise.reject(new Error('crash')) : stack.store.put(key, ...rest));
    await expect(createVideo({ ...deps, store: crashing }, ctx, { body: other })).rejects.toThrow('crash');
    // ...and a job made under another key holds that id by now.
    const made = await createVideo(deps, ctx, { body: { frames: 8, seed: 1 }, idempotencyKey: 'k-9' });
    const job = JSON.parse((await stack.store.get(`jobs/${ctx.tenant}/${made.job.id}/job.json`))!.body.toString());
    await stack.store.put(`jobs/${ctx.tenant}/taken-1/job.json`, JSON.stringify({ ...job, id: 'taken-1' }));
    await expect(createVideo(deps, ctx, { body: other })).rejects.toThrow(IdempotencyConflictError);
  });

  it('still replays a job made with that id, for the same request', async () => {
    const a = await createVideo(deps, ctx, { body: { frames: 8, seed: 1, id: 'mine-1' } });
    const b = await createVideo(deps, ctx, { body: { seed: 1, frames: 8, id: 'mine-1' } });
    expect([a.created, b.created]).toEqual([true, false]);
    expect(b.job.id).toBe('mine-1');
  });
});

describe('request details', () => {
  it('refuses a starting frame whose image data inflates past its header\'s size, naming the entry', async () => {
    // An interlaced 32x32 PNG whose IDAT inflates to 64 MiB (CRCs are not reached: the bound refuses first).
    const ihdr = Buffer.from([0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52, 0, 0, 0, 32, 0, 0, 0, 32, 8, 2, 0, 0, 1, 0, 0, 0, 0]);
    const data = deflateSync(Buffer.alloc(64 * 2 ** 20));
    const idat = Buffer.concat([Buffer.alloc(4), Buffer.from('IDAT'), data, Buffer.alloc(4)]);
    idat.writeUInt32BE(data.length, 0);
    const bomb = Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), ihdr, idat]).toString('base64');
    const err = await createVideo(deps, ctx, { body: { frames: 8, init_frames: [bomb] } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).field).toBe('init_frames.0');
    expect(await stack.store.list('jobs/')).toEqual([]);
  });

  it('refuses a body id that differs from the Idempotency-Key header, and takes them when equal', async () => {
    await expect(createVideo(deps, ctx, { body: { frames: 8, id: 'a-1' }, idempotencyKey: 'b-2' })).rejects.toThrow(ValidationError);
    expect((await stack.store.list('jobs/'))).toEqual([]);
    const ok = await createVideo(deps, ctx, { body: { frames: 8, id: 'a-1' }, idempotencyKey: 'a-1' });
    expect(ok.job.id).toBe('a-1');
  });

  it('takes limit as decimal digits only', async () => {
    for (const limit of ['1e1', '0x10', ' 5', '5.0', '+5', '']) {
      await expect(listVideos(deps, ctx, { limit })).rejects.toThrow(ValidationError);
    }
    expect((await listVideos(deps, ctx, { limit: '10' })).data).toEqual([]);
  });
});
