// createVideo's refusals as the client sees them (field and message), a keyless request leaving no
// idempotency record, a store error while claiming a key, and two identical requests racing.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NotFoundError, ValidationError } from '../../shared/api/errors.js';
import type { ApiDeps, CallContext } from '../../shared/api/types.js';
import { createVideo, getVideo } from '../../shared/api/videos.js';
import { updateJob } from '../../shared/jobs/job-store.js';
import { PngDecodeError } from '../../shared/media/errors.js';
import { rejection, type TempStack, tempStack, testConfig, testManifest } from './helpers.js';

let stack: TempStack;
let deps: ApiDeps;
const ctx: CallContext = { tenant: 'tenant1', baseUrl: 'http://api.test' };
beforeEach(async () => {
  stack = await tempStack();
  deps = { store: stack.store, chunkQueue: stack.chunkQueue, manifest: testManifest(), config: testConfig() };
});
afterEach(() => stack.cleanup());


describe('createVideo refusals', () => {
  it('blames from.video for a continuation of a video that does not exist', async () => {
    const err = await rejection(createVideo(deps, ctx, { body: { frames: 4, from: { video: 'vid_nope', frame: 4 } } }));
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.field).toBe('from.video');
    expect(err.message).toBe('no video vid_nope');
  });

  it('says which id is not a video, bounded, when the id is not even well formed', async () => {
    const bad = `x/${'y'.repeat(100)}`;
    const err = await rejection(getVideo(deps, ctx, bad));
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toBe(`no video ${JSON.stringify(bad.slice(0, 80))}`);
  });

  it('refuses a cut past the end of the video even on a chunk boundary', async () => {
    const { job } = await createVideo(deps, ctx, { body: { frames: 10, seed: 1 } });
    await updateJob(stack.store, ctx.tenant, job.id, (j) => ({ ...j, status: 'succeeded' }));
    const err = await rejection(createVideo(deps, ctx, { body: { frames: 4, from: { video: job.id, frame: 12 } } }));
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.field).toBe('from.frame');
  });

  it('refuses conditioning of its own in a continuation, naming the field', async () => {
    const { job } = await createVideo(deps, ctx, { body: { frames: 8, seed: 1 } });
    await updateJob(stack.store, ctx.tenant, job.id, (j) => ({ ...j, status: 'succeeded' }));
    for (const [field, value] of [['guidance', 3], ['steps', 5], ['label', 1]] as const) {
      const err = await rejection(createVideo(deps, ctx, { body: { frames: 4, from: { video: job.id, frame: 8 }, [field]: value } }));
      expect(err).toBeInstanceOf(ValidationError);
      expect(err.field).toBe(field);
      expect(err.message).toBe(`${field}: a continuation keeps its video's label, guidance and steps and starts from its frames; omit ${field}`);
    }
  });

  it('says a starting frame is not a readable PNG, with the decoder\'s error as the cause', async () => {
    const err = await rejection(createVideo(deps, ctx, { body: { frames: 4, init_frames: [Buffer.from('not a png at all').toString('base64')] } }));
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.field).toBe('init_frames.0');
    expect(err.message).toBe('init_frames.0: not a readable PNG');
    expect(err.cause).toBeInstanceOf(PngDecodeError);
  });

  it('says why a webhook address is refused, blaming webhook', async () => {
    const strict = { ...deps, config: testConfig({ allowLoopbackWebhooks: false }) };
    const err = await rejection(createVideo(strict, ctx, { body: { frames: 4, webhook: 'http://127.0.0.1:9/h' } }));
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.field).toBe('webhook');
    expect(err.message).toMatch(/^webhook: ./);
    expect(err.cause).toBeDefined();
  });
});

describe('createVideo idempotency records', () => {
  it('writes no idempotency record for a request without a key', async () => {
    const { job } = await createVideo(deps, ctx, { body: { frames: 4, seed: 1 } });
    expect(await stack.store.head(`jobs/${ctx.tenant}/${job.id}/idempotency.json`)).toBeNull();
  });

  it('passes on a store error while claiming the key, writing no job', async () => {
    const failing = Object.create(stack.store) as typeof stack.store;
    failing.put = (key, ...rest) => (key.endsWith('/idempotency.json') ? Promise.reject(new Error('disk full')) : stack.store.put(key, ...rest));
    await expect(createVideo({ ...deps, store: failing }, ctx, { body: { frames: 4 }, idempotencyKey: 'k-disk' })).rejects.toThrow('disk full');
    expect((await stack.store.list('jobs/')).filter((k) => k.endsWith('/job.json'))).toEqual([]);
  });

  it('two identical requests racing make one job: one is created, the other finds it', async () => {
    const body = { frames: 4, seed: 1 };
    const results = await Promise.all([1, 2, 3].map(() => createVideo(deps, ctx, { body, idempotencyKey: 'k-race' })));
    expect(new Set(results.map((r) => r.job.id)).size).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
  });
});
