import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startApiServer } from '../../functions/local/server.js';
import { ApiClientError, Ca2vdmClient } from '../../shared/api/client.js';
import { createApiKey, ensureLocalApiKey } from '../../shared/auth/api-keys.js';
import { updateJob } from '../../shared/jobs/job-store.js';
import { ChunkTaskSchema } from '../../shared/schemas/chunk-task.js';
import { chunkFramesKey, inputFrameKey, videoKey } from '../../shared/keys.js';
import { pngBase64, tempStack, testConfig, testManifest, type TempStack } from './helpers.js';

let stack: TempStack;
let server: { url: string; close(): Promise<void> };
let key: string;
let client: Ca2vdmClient;

beforeAll(async () => {
  stack = await tempStack();
  server = await startApiServer({
    ...stack,
    manifest: testManifest(),
    config: testConfig({ maxBodyBytes: 64 * 1024 }),
    port: 0,
  });
  ({ key } = await ensureLocalApiKey(stack.store));
  client = new Ca2vdmClient({ baseUrl: server.url, apiKey: key });
});
afterAll(async () => {
  await server?.close();
  await stack?.cleanup();
});

async function raw(method: string, path: string, body?: string, headers: Record<string, string> = {}) {
  const res = await fetch(server.url + path, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body,
  });
  return { status: res.status, json: (await res.json()) as { error?: { code: string; field?: string; message: string } } & Record<string, unknown> };
}

async function jobCount(): Promise<number> {
  return (await stack.store.list('jobs/')).filter((k) => k.endsWith('/job.json')).length;
}

describe('POST /v1/videos', () => {
  test('202 with id, status, urls, created_at; job.json and chunk task 0 are written', async () => {
    const res = await raw('POST', '/v1/videos', JSON.stringify({ frames: 10, label: '2 balls', seed: 7, init_frames: [pngBase64()] }));
    expect(res.status).toBe(202);
    const id = res.json.id as string;
    expect(res.json).toMatchObject({ status: 'starting', urls: { get: `${server.url}/v1/videos/${id}` } });
    expect(res.json.created_at).toEqual(expect.any(String));
    const job = await client.getVideo(id);
    expect(job.progress).toEqual({ chunks_done: 0, chunks_total: 3, frames_done: 0, frames_total: 10 });
    expect(job.input).toMatchObject({ label: 1, seed: 7, steps: 25, guidance: 2, init_frames: 1 });
    expect(await stack.store.head(`jobs/local/${id}/input/000.png`)).not.toBeNull();
    const [msg] = await stack.chunkQueue.receive({ visibilitySec: 30, max: 10 });
    expect(ChunkTaskSchema.parse(JSON.parse(msg.body))).toMatchObject({ job: id, tenant: 'local', chunk: 0 });
    expect(msg.groupId).toBe(id);
    await stack.chunkQueue.delete(msg.receiptHandle);
  });

  const bad: [string, string, number, string][] = [
    ['malformed JSON', '{"frames": 1', 400, 'body'],
    ['not an object', '[1,2]', 400, 'body'],
    ['frames missing', '{}', 400, 'frames'],
    ['frames wrong type', '{"frames":"ten"}', 400, 'frames'],
    ['frames zero', '{"frames":0}', 400, 'frames'],
    ['frames over the limit', '{"frames":100000}', 400, 'frames'],
    ['frames fractional', '{"frames":1.5}', 400, 'frames'],
    ['steps out of range', '{"frames":8,"steps":0}', 400, 'steps'],
    ['steps over the limit', '{"frames":8,"steps":5000}', 400, 'steps'],
    ['guidance out of range', '{"frames":8,"guidance":-1}', 400, 'guidance'],
    ['unknown label', '{"frames":8,"label":"7 balls"}', 400, 'label'],
    ['label index out of range', '{"frames":8,"label":3}', 400, 'label'],
    ['seed negative', '{"frames":8,"seed":-1}', 400, 'seed'],
    ['unknown field', '{"frames":8,"frame":8}', 400, 'frame'],
    ['init frame not base64', '{"frames":8,"init_frames":["%%%"]}', 400, 'init_frames.0'],
    ['init frame not a PNG', `{"frames":8,"init_frames":["${Buffer.from('GIF89a nope').toString('base64')}"]}`, 400, 'init_frames.0'],
    ['init frame wrong size', `{"frames":8,"init_frames":["${pngBase64()}","${pngBase64(16, 16)}"]}`, 400, 'init_frames.1'],
    ['too many init frames', JSON.stringify({ frames: 8, init_frames: Array(13).fill(pngBase64()) }), 400, 'init_frames'],
    ['webhook not a URL', '{"frames":8,"webhook":"nope"}', 400, 'webhook'],
    ['webhook URL without slashes', '{"frames":8,"webhook":"https:93.184.216.34/hook"}', 400, 'webhook'],
    ['webhook to a private address', '{"frames":8,"webhook":"http://10.0.0.1/hook"}', 400, 'webhook'],
    ['webhook to metadata', '{"frames":8,"webhook":"http://169.254.169.254/latest"}', 400, 'webhook'],
    ['webhook to mapped metadata', '{"frames":8,"webhook":"http://[::ffff:169.254.169.254]/"}', 400, 'webhook'],
    ['webhook to EC2 IPv6 metadata', '{"frames":8,"webhook":"http://[fd00:ec2::254]/"}', 400, 'webhook'],
    ['webhook non-http scheme', '{"frames":8,"webhook":"file:///etc/passwd"}', 400, 'webhook'],
    ['unknown event type', '{"frames":8,"webhook_events_filter":["done"]}', 400, 'webhook_events_filter.0'],
    ['body over the limit', JSON.stringify({ frames: 8, pad: 'x'.repeat(70 * 1024) }), 413, 'body'],
  ];
  test.each(bad)('%s -> %i naming %s, no job created', async (_name, body, status, field) => {
    const before = await jobCount();
    const res = await raw('POST', '/v1/videos', body);
    expect(res.status).toBe(status);
    expect(res.json.error?.field).toBe(field);
    expect(res.json.error?.message).toEqual(expect.any(String));
    expect(await jobCount()).toBe(before);
  });

  test('wrong content type is a 415', async () => {
    const res = await raw('POST', '/v1/videos', '{"frames":8}', { 'content-type': 'text/plain' });
    expect(res.status).toBe(415);
  });

  test('idempotency: same key and body give the same job; a different body is a 409', async () => {
    const a = await client.createVideo({ frames: 8, seed: 1 }, { idempotencyKey: 'k-1' });
    const b = await raw('POST', '/v1/videos', JSON.stringify({ seed: 1, frames: 8 }), { 'idempotency-key': 'k-1' });
    expect(b.status).toBe(200);
    expect(b.json.id).toBe(a.id);
    const c = await raw('POST', '/v1/videos', JSON.stringify({ frames: 9, seed: 1 }), { 'idempotency-key': 'k-1' });
    expect(c.status).toBe(409);
    expect(c.json.error?.code).toBe('idempotency_conflict');
    const d = await client.createVideo({ frames: 8, id: 'my-video-1' });
    expect(d.id).toBe('my-video-1');
    expect((await client.createVideo({ frames: 8, id: 'my-video-1' })).id).toBe('my-video-1');
    await expect(client.createVideo({ frames: 4, id: 'my-video-1' })).rejects.toMatchObject({ status: 409 });
  });

  test('a client id already taken by a job made without it is a 409 that leaves its inputs alone', async () => {
    const first = await client.createVideo({ frames: 8, init_frames: [pngBase64()] });
    const before = (await stack.store.get(inputFrameKey('local', first.id, 0)))!.etag;
    const res = await raw('POST', '/v1/videos', JSON.stringify({ frames: 6, id: first.id, init_frames: [pngBase64(32, 32, [0, 0, 255])] }));
    expect(res.status).toBe(409);
    expect(res.json.error?.field).toBe('id');
    expect((await stack.store.get(inputFrameKey('local', first.id, 0)))!.etag).toBe(before);
  });
});

describe('auth and tenancy', () => {
  test('no key or an unknown key is a 401', async () => {
    expect((await fetch(`${server.url}/v1/videos`)).status).toBe(401);
    // Both headers may come (the client sends both, for API Gateway's usage plans); they must agree.
    expect((await raw('GET', '/v1/videos', undefined, { 'x-api-key': key })).status).toBe(200);
    const mixed = await raw('GET', '/v1/videos', undefined, { 'x-api-key': await createApiKey(stack.store, 'other-tenant') });
    expect(mixed.status).toBe(401);
    expect(mixed.json.error?.message).toMatch(/different API keys/);
    const sent: Headers[] = [];
    const spy = new Ca2vdmClient({ baseUrl: server.url, apiKey: key, fetch: (u, init) => { sent.push(new Headers(init?.headers)); return fetch(u, init); } });
    await spy.listVideos();
    expect([sent[0].get('authorization'), sent[0].get('x-api-key')]).toEqual([`Bearer ${key}`, key]);
    const res = await raw('GET', '/v1/videos', undefined, { authorization: 'Bearer c2v_nope' });
    expect(res.status).toBe(401);
    expect(res.json.error?.code).toBe('unauthorized');
  });

  test("another tenant's job is a 404 for get, cancel and files, and absent from its list", async () => {
    const mine = await client.createVideo({ frames: 4 });
    const otherKey = await createApiKey(stack.store, 'other');
    const other = new Ca2vdmClient({ baseUrl: server.url, apiKey: otherKey });
    await expect(other.getVideo(mine.id)).rejects.toMatchObject({ status: 404, code: 'not_found' });
    await expect(other.cancelVideo(mine.id)).rejects.toMatchObject({ status: 404 });
    const file = await fetch(`${server.url}/v1/videos/${mine.id}/files/output/video.mp4`, {
      headers: { authorization: `Bearer ${otherKey}` },
    });
    expect(file.status).toBe(404);
    expect((await other.listVideos()).data).toEqual([]);
    expect((await client.getVideo(mine.id)).id).toBe(mine.id);
  });

  test('unknown job id and unknown route are 404s', async () => {
    await expect(client.getVideo('vid_doesnotexist')).rejects.toMatchObject({ status: 404, field: 'id' });
    await expect(client.getVideo('..%2F..%2Fetc')).rejects.toMatchObject({ status: 404 });
    expect((await raw('GET', '/v2/nothing')).status).toBe(404);
    expect((await raw('GET', '/v1/videos/%ZZ')).status).toBe(404);
    expect((await raw('DELETE', '/v1/videos')).status).toBe(405);
  });
});

describe('GET, list, cancel, files', () => {
  test('list is newest first and paged with a cursor', async () => {
    const other = new Ca2vdmClient({ baseUrl: server.url, apiKey: await createApiKey(stack.store, 'lister') });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await other.createVideo({ frames: 4 })).id);
      await new Promise((r) => setTimeout(r, 3));
    }
    const p1 = await other.listVideos({ limit: 2 });
    const p2 = await other.listVideos({ limit: 2, cursor: p1.next_cursor! });
    const p3 = await other.listVideos({ limit: 2, cursor: p2.next_cursor! });
    expect([...p1.data, ...p2.data, ...p3.data].map((j) => j.id)).toEqual(ids.reverse());
    expect(p3.next_cursor).toBeNull();
    await expect(other.listVideos({ limit: 0 })).rejects.toMatchObject({ status: 400, field: 'limit' });
    await expect(other.listVideos({ cursor: 'garbage' })).rejects.toMatchObject({ status: 400, field: 'cursor' });
  });

  test('cancel sets cancel_requested; cancel of a finished job is a no-op that says so', async () => {
    const job = await client.createVideo({ frames: 4 });
    const res = await raw('POST', `/v1/videos/${job.id}/cancel`);
    expect(res.status).toBe(202);
    expect(res.json.cancel_requested).toBe(true);
    const done = await client.createVideo({ frames: 4 });
    await updateJob(stack.store, 'local', done.id, (j) => ({ ...j, status: 'succeeded' }));
    const again = await raw('POST', `/v1/videos/${done.id}/cancel`);
    expect(again.status).toBe(200);
    expect(again.json.cancel_requested).toBe(false);
    expect(again.json.detail).toMatch(/already succeeded/);
  });

  test('output links: chunk frames while running, the video when done, downloadable with the key', async () => {
    const job = await client.createVideo({ frames: 8 });
    await stack.store.put(chunkFramesKey('local', job.id, 0), Buffer.from(pngBase64(), 'base64'));
    let got = await client.getVideo(job.id);
    expect(got.output.frames).toEqual([{ chunk: 0, index: null, url: `${server.url}/v1/videos/${job.id}/files/frames/000000.png` }]);
    expect(got.output.video).toBeNull();
    await stack.store.put(videoKey('local', job.id), Buffer.from('fake mp4'));
    await updateJob(stack.store, 'local', job.id, (j) => ({ ...j, status: 'succeeded', outputs: { video: videoKey('local', j.id) } }));
    got = await client.getVideo(job.id);
    expect(got.output.video).toBe(`${server.url}/v1/videos/${job.id}/files/output/video.mp4`);
    const res = await fetch(got.output.video!, { headers: { authorization: `Bearer ${key}` } });
    expect(res.headers.get('content-type')).toBe('video/mp4');
    expect(await res.text()).toBe('fake mp4');
    expect((await fetch(got.output.video!)).status).toBe(401);
  });

  test('webhook secret is a stable whsec_ per tenant', async () => {
    const a = await client.webhookSecret();
    expect(a.key).toMatch(/^whsec_[A-Za-z0-9+/=]{40,}$/);
    expect((await client.webhookSecret()).key).toBe(a.key);
  });
});

test('ApiClientError carries code and field', () => {
  expect(new ApiClientError(400, 'invalid_request', 'm', 'frames').message).toContain('(frames)');
});
