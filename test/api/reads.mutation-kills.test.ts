// The API's reads and cancel, called in process on a local store: listing and its pages, cancel,
// the HLS playlist, the files route; each only ever shows the caller's own jobs.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NotFoundError, ValidationError } from '../../shared/api/errors.js';
import type { ApiDeps, CallContext } from '../../shared/api/types.js';
import { cancelVideo, createVideo, getVideo, getVideoFile, getVideoStream, listVideos } from '../../shared/api/videos.js';
import { readJob, updateJob } from '../../shared/jobs/job-store.js';
import { jobKey, streamSegmentKey } from '../../shared/keys.js';
import type { Job } from '../../shared/schemas/job.js';
import type { LocalStore } from '../../shared/store/local-store.js';
import { rejection, type TempStack, tempStack, testConfig, testManifest } from './helpers.js';

let stack: TempStack;
let deps: ApiDeps;
let clock: number;
const ctx: CallContext = { tenant: 'tenant1', baseUrl: 'http://api.test' };
const other: CallContext = { tenant: 'tenant2', baseUrl: 'http://api.test' };
beforeEach(async () => {
  stack = await tempStack();
  clock = Date.parse('2026-05-01T00:00:00.000Z');
  // Each call to now() is a second later: jobs are listed in a known order and cancel times differ.
  deps = { store: stack.store, chunkQueue: stack.chunkQueue, manifest: testManifest(), config: testConfig(), now: () => new Date((clock += 1000)) };
});
afterEach(() => stack.cleanup());


async function make(n: number, c = ctx): Promise<string[]> {
  const ids = [];
  for (let i = 0; i < n; i++) ids.push((await createVideo(deps, c, { body: { frames: 4, seed: i } })).job.id);
  return ids;
}

const setJob = (id: string, edit: (j: Job) => Job) => updateJob(stack.store, ctx.tenant, id, edit);

describe('listVideos', () => {
  it('pages through the tenant\'s jobs newest first, each once, the last page without a cursor', async () => {
    const ids = await make(5);
    const seen: string[][] = [];
    let cursor: string | undefined;
    // At most one page more than needed: a cursor that does not move on must fail, not loop.
    do {
      const page = await listVideos(deps, ctx, { limit: '2', ...(cursor ? { cursor } : {}) });
      seen.push(page.data.map((j) => j.id));
      cursor = page.next_cursor ?? undefined;
    } while (cursor && seen.length < 4);
    expect(seen).toEqual([[ids[4], ids[3]], [ids[2], ids[1]], [ids[0]]]);
    expect((await listVideos(deps, ctx, { limit: '5' })).next_cursor).toBeNull();
    expect((await listVideos(deps, ctx, { limit: '4' })).data.map((j) => j.id)).toEqual([ids[4], ids[3], ids[2], ids[1]]);
    expect((await listVideos(deps, ctx, {})).data).toHaveLength(5);
  });

  it('shows a job in the summary form, with its links', async () => {
    const [id] = await make(1);
    const [job] = (await listVideos(deps, ctx, {})).data;
    expect(job).toMatchObject({ id, status: 'starting', input: { frames: 4, seed: 0 }, urls: { get: `http://api.test/v1/videos/${id}` } });
  });

  it('shows another tenant nothing', async () => {
    await make(2);
    expect(await listVideos(deps, other, {})).toEqual({ data: [], next_cursor: null });
  });

  it('skips an index entry whose job is gone', async () => {
    const ids = await make(3);
    await stack.store.delete(jobKey(ctx.tenant, ids[1]));
    expect((await listVideos(deps, ctx, {})).data.map((j) => j.id)).toEqual([ids[2], ids[0]]);
  });

  it('takes a limit from 1 to the page size', async () => {
    const small = { ...deps, config: testConfig({ maxPageSize: 3 }) };
    await make(4);
    expect((await listVideos(small, ctx, { limit: '1' })).data).toHaveLength(1);
    expect((await listVideos(small, ctx, { limit: '3' })).data).toHaveLength(3);
    for (const limit of ['0', '4']) {
      const err = await rejection(listVideos(small, ctx, { limit }));
      expect(err).toBeInstanceOf(ValidationError);
      expect(err.message).toBe('limit must be an integer in [1, 3]');
      expect(err.field).toBe('limit');
    }
  });

  it('refuses a cursor it did not make', async () => {
    await make(1);
    const enc = (s: string) => Buffer.from(s).toString('base64url');
    for (const cursor of ['garbage', enc('x0000000000001-vid_a'), enc('0000000000001-vid_a!'), enc('0000000000001-'), enc('00000000001-vid_a'), enc(`0000000000001-${'a'.repeat(65)}`)]) {
      const err = await rejection(listVideos(deps, ctx, { cursor }));
      expect(err).toBeInstanceOf(ValidationError);
      expect(err.message).toBe('cursor is not valid');
      expect(err.field).toBe('cursor');
    }
  });
});

describe('cancelVideo', () => {
  it('asks a running job to stop, once: a second cancel keeps the first one\'s time', async () => {
    const [id] = await make(1);
    const first = await cancelVideo(deps, ctx, id);
    expect(first.cancel_requested).toBe(true);
    expect(first.detail).toBe('cancel requested; the video stops at the next chunk boundary and ends canceled (also when its last chunk is in flight: no outputs are attached)');
    const at = (await readJob(stack.store, ctx.tenant, id))!.job.cancel_requested_at;
    expect(at).toBeDefined();
    const second = await cancelVideo(deps, ctx, id);
    expect(second.cancel_requested).toBe(true);
    expect((await readJob(stack.store, ctx.tenant, id))!.job.cancel_requested_at).toBe(at);
  });

  it('leaves a finished job as it is', async () => {
    const [done, canceled] = await make(2);
    await setJob(done, (j) => ({ ...j, status: 'succeeded' }));
    await setJob(canceled, (j) => ({ ...j, status: 'canceled', cancel_requested: true }));
    const a = await cancelVideo(deps, ctx, done);
    expect(a).toMatchObject({ cancel_requested: false, detail: 'video already succeeded; nothing to cancel', job: { status: 'succeeded', cancel_requested: false } });
    expect((await readJob(stack.store, ctx.tenant, done))!.job.cancel_requested).toBe(false);
    const b = await cancelVideo(deps, ctx, canceled);
    expect(b).toMatchObject({ cancel_requested: false, detail: 'video already canceled; nothing to cancel' });
  });

  it('is a 404 for another tenant\'s job, which it leaves running', async () => {
    const [id] = await make(1);
    const err = await rejection(cancelVideo(deps, other, id));
    expect(err).toBeInstanceOf(NotFoundError);
    expect((await readJob(stack.store, ctx.tenant, id))!.job.cancel_requested).toBe(false);
  });

  it('is a 404 on id when the job goes away while it cancels', async () => {
    const [id] = await make(1);
    let reads = 0;
    const vanishing = Object.create(stack.store) as LocalStore;
    vanishing.get = (key) => (key === jobKey(ctx.tenant, id) && reads++ > 0 ? Promise.resolve(null) : stack.store.get(key));
    const err = await rejection(cancelVideo({ ...deps, store: vanishing }, ctx, id));
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toBe(`no video ${id}`);
    expect(err.field).toBe('id');
  });
});

describe('getVideoStream', () => {
  async function withSegments(chunksDone: number, segments: number[], status: Job['status'] = 'processing') {
    const { job } = await createVideo(deps, ctx, { body: { frames: 10, seed: 1 } });
    for (const k of segments) await stack.store.put(streamSegmentKey(ctx.tenant, job.id, k), Buffer.from([k]));
    await setJob(job.id, (j) => ({ ...j, status, progress: { ...j.progress, chunks_done: chunksDone, frames_done: Math.min(10, chunksDone * 4) } }));
    return job.id;
  }
  const head = '#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n';
  const seg = (id: string, k: number, d: string) => `#EXTINF:${d},\nhttp://api.test/v1/videos/${id}/files/stream/${String(k).padStart(6, '0')}.ts\n`;

  it('lists one segment per recorded chunk, the last one short, and ends once the job has', async () => {
    const id = await withSegments(3, [0, 1, 2], 'succeeded');
    expect(await getVideoStream(deps, ctx, id)).toBe(head + seg(id, 0, '0.500') + seg(id, 1, '0.500') + seg(id, 2, '0.250') + '#EXT-X-ENDLIST\n');
  });

  it('lists no segment whose chunk is not recorded yet, and no end while the job runs', async () => {
    const id = await withSegments(1, [0, 1]);
    expect(await getVideoStream(deps, ctx, id)).toBe(head + seg(id, 0, '0.500'));
    const none = await withSegments(0, [0]);
    expect(await getVideoStream(deps, ctx, none)).toBe(head);
  });

  it('stops at the first missing segment', async () => {
    const id = await withSegments(3, [0, 2]);
    expect(await getVideoStream(deps, ctx, id)).toBe(head + seg(id, 0, '0.500'));
  });

  it('is a 404 for another tenant', async () => {
    const id = await withSegments(1, [0]);
    expect(await rejection(getVideoStream(deps, other, id))).toBeInstanceOf(NotFoundError);
  });
});

describe('getVideoFile', () => {
  async function withFiles(files: Record<string, string>) {
    const [id] = await make(1);
    for (const [rel, body] of Object.entries(files)) await stack.store.put(`jobs/${ctx.tenant}/${id}/${rel}`, body);
    return id;
  }

  it('serves the outputs, chunk frames and segments with their content types', async () => {
    const files = {
      'output/video.mp4': 'mp4', 'output/full.mp4': 'full', 'output/preview.gif': 'gif', 'frames/000001.png': 'png',
      'frames/000002-003.png': 'png3', 'frames/000004.json': 'json', 'frames/000005.rawf32le': 'raw', 'stream/000007.ts': 'ts',
    };
    const id = await withFiles(files);
    const types: Record<string, string> = {
      'output/video.mp4': 'video/mp4', 'output/full.mp4': 'video/mp4', 'output/preview.gif': 'image/gif', 'frames/000001.png': 'image/png',
      'frames/000002-003.png': 'image/png', 'frames/000004.json': 'application/json', 'frames/000005.rawf32le': 'application/octet-stream', 'stream/000007.ts': 'video/mp2t',
    };
    for (const [rel, body] of Object.entries(files)) {
      const got = await getVideoFile(deps, ctx, id, rel);
      expect(got.body.toString()).toBe(body);
      expect(got.contentType).toBe(types[rel]);
    }
  });

  it('takes the content type the store kept over the one its name suggests', async () => {
    const id = await withFiles({ 'output/video.mp4': 'mp4' });
    const typed = Object.create(stack.store) as LocalStore;
    typed.get = async (key) => {
      const obj = await stack.store.get(key);
      return obj && { ...obj, contentType: 'video/x-test' };
    };
    expect((await getVideoFile({ ...deps, store: typed }, ctx, id, 'output/video.mp4')).contentType).toBe('video/x-test');
  });

  it('serves nothing outside the outputs, frames and segments, naming the path (bounded)', async () => {
    const id = await withFiles({ 'frames/000001.png': 'png', 'stream/000001.ts': 'ts', 'output/video.mp4': 'mp4' });
    const long = `frames/${'9'.repeat(100)}.png`;
    const refused = [
      'job.json', 'idempotency.json', 'x/output/video.mp4', 'output/video.mp4x', 'output/video.mp4/../../job.json', 'frames/1.png',
      'frames/abcdef.png', 'frames/000001-1.png', 'frames/000001-abc.png', 'frames/000001.PNG', 'frames/000001.pngpngpng', 'frames/000001.',
      'stream/1.ts', 'stream/abcdef.ts', 'stream/000001.tsx', long,
    ];
    for (const rel of refused) {
      const err = await rejection(getVideoFile(deps, ctx, id, rel));
      expect(err, rel).toBeInstanceOf(NotFoundError);
      expect(err.field).toBe('path');
      expect(err.message).toBe(`no file ${JSON.stringify(rel.slice(0, 80))}`);
    }
  });

  it('is a 404 on path for a file not written yet, and for another tenant', async () => {
    const id = await withFiles({ 'output/video.mp4': 'mp4' });
    const err = await rejection(getVideoFile(deps, ctx, id, 'output/preview.gif'));
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toBe('no file output/preview.gif (yet)');
    expect(err.field).toBe('path');
    const theirs = await rejection(getVideoFile(deps, other, id, 'output/video.mp4'));
    expect(theirs).toBeInstanceOf(NotFoundError);
    expect(theirs.field).toBe('id');
  });
});

describe('getVideo', () => {
  it('shows the caller\'s job with its output links, and is a 404 for another tenant', async () => {
    const [id] = await make(1);
    await stack.store.put(`jobs/${ctx.tenant}/${id}/output/video.mp4`, 'mp4');
    await setJob(id, (j) => ({ ...j, status: 'succeeded', outputs: { video: `jobs/${ctx.tenant}/${id}/output/video.mp4` } }));
    const job = await getVideo(deps, ctx, id);
    expect(job.output.video).toBe(`http://api.test/v1/videos/${id}/files/output/video.mp4`);
    expect(job.urls_expire_at).toBeNull();
    const err = await rejection(getVideo(deps, other, id));
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toBe(`no video ${id}`);
  });
});
