// createVideo where the store answers badly or another request gets there first: a write that lands
// but reports an error, a twin that creates the job between our checks, a job under another key
// appearing after the first read. Also what goes into the store besides job.json (the starting
// frames and the idempotency record, with their content types), the frame checks, the webhook
// host's resolver, and a latent model's refusals.
import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IdempotencyConflictError, NotFoundError, ValidationError } from '../../shared/api/errors.js';
import type { ApiDeps, CallContext } from '../../shared/api/types.js';
import { createVideo, extendVideo, getVideo } from '../../shared/api/videos.js';
import { readJob, updateJob } from '../../shared/jobs/job-store.js';
import { reapStalledJobs } from '../../shared/jobs/reaper.js';
import { activeJobKey, jobKey } from '../../shared/keys.js';
import { FrameSizeError } from '../../shared/media/errors.js';
import { parseServedManifest } from '../../shared/model/served.js';
import { PreconditionFailedError } from '../../shared/store/errors.js';
import type { LocalStore } from '../../shared/store/local-store.js';
import type { PutOptions } from '../../shared/store/object-store.js';
import { drainTasks, pngBase64, rejection, type TempStack, tempStack, testConfig, testManifest } from './helpers.js';

let stack: TempStack;
let deps: ApiDeps;
const ctx: CallContext = { tenant: 'tenant1', baseUrl: 'http://api.test' };
beforeEach(async () => {
  stack = await tempStack();
  deps = { store: stack.store, chunkQueue: stack.chunkQueue, manifest: testManifest(), config: testConfig() };
});
afterEach(() => stack.cleanup());


/** The store, with `put` replaced for the keys `when` picks (`real` is the store's own put). */
function storeWithPut(
  when: (key: string, opts?: PutOptions) => boolean,
  put: (real: LocalStore['put'], ...args: Parameters<LocalStore['put']>) => ReturnType<LocalStore['put']>,
): LocalStore {
  const s = Object.create(stack.store) as LocalStore;
  const real = stack.store.put.bind(stack.store);
  s.put = (key, body, opts) => (when(key, opts) ? put(real, key, body, opts) : real(key, body, opts));
  return s;
}

const isJobCreate = (key: string, opts?: PutOptions) => key.endsWith('/job.json') && opts?.ifNoneMatch === '*';

const tasks = () => drainTasks(stack.chunkQueue);

describe('createVideo when job.json cannot simply be created', () => {
  it('passes on a store error even when the write landed; a retry with the key then gets the job', async () => {
    const lost = storeWithPut(isJobCreate, async (real, key, body, opts) => {
      await real(key, body, opts);
      throw new Error('connection reset');
    });
    const body = { frames: 4, seed: 1 };
    await expect(createVideo({ ...deps, store: lost }, ctx, { body, idempotencyKey: 'k-lost' })).rejects.toThrow('connection reset');
    const again = await createVideo(deps, ctx, { body, idempotencyKey: 'k-lost' });
    expect(again.created).toBe(false);
    expect((await tasks()).map((t) => t.job)).toEqual([again.job.id]);
  });

  it('a twin request that created the job first under the same key: this one gets it, not created, and it starts', async () => {
    const twin = storeWithPut(isJobCreate, async (real, key, body, opts) => {
      await real(key, body, opts);
      throw new PreconditionFailedError(key, { ifNoneMatch: '*' });
    });
    const res = await createVideo({ ...deps, store: twin }, ctx, { body: { frames: 4, seed: 1 }, idempotencyKey: 'k-twin' });
    expect(res.created).toBe(false);
    expect((await readJob(stack.store, ctx.tenant, res.job.id))!.job.idempotency_key).toBe('k-twin');
    expect((await tasks()).map((t) => t.job)).toEqual([res.job.id]);
  });

  it('a job made under another key taking the id first is a conflict on id', async () => {
    const other = storeWithPut(isJobCreate, async (real, key, body, opts) => {
      const job = JSON.parse(String(body));
      await real(key, JSON.stringify({ ...job, idempotency_key: 'k-someone-else' }), opts);
      throw new PreconditionFailedError(key, { ifNoneMatch: '*' });
    });
    const err = await rejection(createVideo({ ...deps, store: other }, ctx, { body: { frames: 4, seed: 1, id: 'mine-2' } }));
    expect(err).toBeInstanceOf(IdempotencyConflictError);
    expect(err.message).toBe('a job with id mine-2 already exists');
    expect(err.field).toBe('id');
    expect(await tasks()).toEqual([]);
  });

  it('a request without a key never takes over a job it finds under its id', async () => {
    const taken = storeWithPut(isJobCreate, async (real, key, body, opts) => {
      await real(key, body, opts);
      throw new PreconditionFailedError(key, { ifNoneMatch: '*' });
    });
    const err = await rejection(createVideo({ ...deps, store: taken }, ctx, { body: { frames: 4, seed: 1 } }));
    expect(err).toBeInstanceOf(IdempotencyConflictError);
    expect(err.message).toMatch(/^a job with id vid_[0-9a-f]{24} already exists$/);
    expect(err.field).toBe('id');
    expect(await tasks()).toEqual([]);
  });

  it('a refused create with no job behind it passes the store error on', async () => {
    const refusing = storeWithPut(isJobCreate, async (_real, key) => {
      throw new PreconditionFailedError(key, { ifNoneMatch: '*' });
    });
    const err = await rejection(createVideo({ ...deps, store: refusing }, ctx, { body: { frames: 4, seed: 1 }, idempotencyKey: 'k-ghost' }));
    expect(err).toBeInstanceOf(PreconditionFailedError);
  });
});

describe('createVideo replays', () => {
  it('refuses to replay a job made under another key that appeared after the first look', async () => {
    const body = { frames: 8, seed: 2, id: 'taken-2' };
    // A first try wrote its idempotency record and crashed before job.json...
    const crashing = storeWithPut((k) => k.endsWith('/job.json'), () => Promise.reject(new Error('crash')));
    await expect(createVideo({ ...deps, store: crashing }, ctx, { body })).rejects.toThrow('crash');
    // ...then a job under another key lands on that id, just after this retry's first read.
    const made = await createVideo(deps, ctx, { body: { frames: 8, seed: 1 }, idempotencyKey: 'k-other' });
    const record = (await readJob(stack.store, ctx.tenant, made.job.id))!.job;
    let reads = 0;
    const late = Object.create(stack.store) as LocalStore;
    late.get = async (key) => {
      if (key !== jobKey(ctx.tenant, 'taken-2')) return stack.store.get(key);
      if (reads++ === 0) {
        await stack.store.put(key, JSON.stringify({ ...record, id: 'taken-2' }));
        return null;
      }
      return stack.store.get(key);
    };
    const err = await rejection(createVideo({ ...deps, store: late }, ctx, { body }));
    expect(err).toBeInstanceOf(IdempotencyConflictError);
    expect(err.message).toBe('a job with id taken-2 already exists');
    expect(err.field).toBe('id');
  });

  it('names the id when a client id is already a job made without it', async () => {
    const { job } = await createVideo(deps, ctx, { body: { frames: 4, seed: 1 } });
    const err = await rejection(createVideo(deps, ctx, { body: { frames: 4, seed: 1, id: job.id } }));
    expect(err).toBeInstanceOf(IdempotencyConflictError);
    expect(err.message).toBe(`a job with id ${job.id} already exists`);
    expect(err.field).toBe('id');
  });

  it('a replay of a finished job leaves it finished: no active marker again, no task', async () => {
    const body = { frames: 4, seed: 1 };
    const first = await createVideo(deps, ctx, { body, idempotencyKey: 'k-done' });
    await tasks();
    await updateJob(stack.store, ctx.tenant, first.job.id, (j) => ({ ...j, status: 'succeeded' }));
    await reapStalledJobs({ store: stack.store, chunkQueue: stack.chunkQueue }, { stallAfterSec: 60 });
    expect(await stack.store.head(activeJobKey(ctx.tenant, first.job.id))).toBeNull();
    const again = await createVideo(deps, ctx, { body, idempotencyKey: 'k-done' });
    expect(again).toMatchObject({ created: false, job: { id: first.job.id, status: 'succeeded' } });
    expect(await stack.store.head(activeJobKey(ctx.tenant, first.job.id))).toBeNull();
    expect(await tasks()).toEqual([]);
  });
});

describe('what createVideo stores', () => {
  it('stores each starting frame as its PNG bytes, typed image/png, and the idempotency record as JSON', async () => {
    const types = new Map<string, string | undefined>();
    const recording = storeWithPut(() => true, (real, key, body, opts) => {
      types.set(key, opts?.contentType);
      return real(key, body, opts);
    });
    const frames = [pngBase64(32, 32, [1, 2, 3]), pngBase64(32, 32, [4, 5, 6])];
    const { job } = await createVideo({ ...deps, store: recording }, ctx, { body: { frames: 8, seed: 1, init_frames: frames }, idempotencyKey: 'k-frames' });
    const stored = (await readJob(stack.store, ctx.tenant, job.id))!.job;
    expect(stored.request.init_frames.count).toBe(2);
    for (const [i, key] of stored.request.init_frames.keys.entries()) {
      expect((await stack.store.get(key))!.body.toString('base64')).toBe(frames[i]);
      expect(types.get(key)).toBe('image/png');
    }
    const recordKey = `jobs/${ctx.tenant}/${job.id}/idempotency.json`;
    expect(types.get(recordKey)).toBe('application/json');
    expect(JSON.parse((await stack.store.get(recordKey))!.body.toString())).toMatchObject({ key: 'k-frames' });
  });

  it('refuses a starting frame of another size, saying which sizes, with the size error as the cause', async () => {
    const err = await rejection(createVideo(deps, ctx, { body: { frames: 4, init_frames: [pngBase64(32, 32), pngBase64(16, 24)] } }));
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.field).toBe('init_frames.1');
    expect(err.message).toBe('init_frames.1: frame size mismatch: expected 32x32, got 16x24');
    expect(err.cause).toBeInstanceOf(FrameSizeError);
    expect(await stack.store.list('jobs/')).toEqual([]);
  });

  it('resolves the webhook host with the resolver it is given', async () => {
    const resolve = async (host: string) => (host === 'hooks.example.test' ? [{ address: '93.184.216.34', family: 4 }] : []);
    const strict = { ...deps, config: testConfig({ allowLoopbackWebhooks: false }), resolve };
    const { job } = await createVideo(strict, ctx, { body: { frames: 4, webhook: 'http://hooks.example.test/h' } });
    expect((await readJob(stack.store, ctx.tenant, job.id))!.job.request.webhook).toBe('http://hooks.example.test/h');
    const inside = { ...strict, resolve: async () => [{ address: '10.0.0.7', family: 4 }] };
    const err = await rejection(createVideo(inside, ctx, { body: { frames: 4, webhook: 'http://hooks.example.test/h' } }));
    expect(err).toBeInstanceOf(ValidationError);
    expect(err.field).toBe('webhook');
  });

  it('a missing video is a 404 on id', async () => {
    const err = await rejection(getVideo(deps, ctx, 'vid_missing'));
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toBe('no video vid_missing');
    expect(err.field).toBe('id');
  });
});

describe('a latent model', () => {
  const latent = () => {
    const url = new URL('../../model/artifacts/official-tiny-random/manifest.json', import.meta.url);
    return parseServedManifest(JSON.parse(readFileSync(url, 'utf8')));
  };

  it('asks a new video for its starting frames, and not a continuation, which starts from its video\'s', async () => {
    const manifest = latent();
    expect(manifest.format).toBe(2);
    const d = { ...deps, manifest };
    const fresh = await rejection(createVideo(d, ctx, { body: { frames: 8 } }));
    expect(fresh).toBeInstanceOf(ValidationError);
    expect(fresh.field).toBe('init_frames');
    const { job } = await createVideo(d, ctx, { body: { frames: 4, seed: 1, init_frames: [pngBase64(manifest.frame.width, manifest.frame.height)] } });
    await updateJob(stack.store, ctx.tenant, job.id, (j) => ({ ...j, status: 'succeeded' }));
    const more = await extendVideo(d, ctx, job.id, { body: { frames: 8 } });
    expect(more.created).toBe(true);
    const fork = await createVideo(d, ctx, { body: { frames: 2, from: { video: job.id, frame: manifest.chunk_frames } } });
    expect(fork.created).toBe(true);
  });
});
