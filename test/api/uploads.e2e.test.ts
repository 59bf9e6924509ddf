/**
 * Uploads for starting frames through the embedded server: declare, PUT, name the upload in
 * `init_frames`; every bad case is a 4xx naming its field, with nothing written for the job.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startApiServer } from '../../functions/local/server.js';
import { uploadKey } from '../../shared/api/keys.js';
import { createApiKey, ensureLocalApiKey } from '../../shared/auth/api-keys.js';
import { readJob } from '../../shared/jobs/job-store.js';
import { S3Store } from '../../shared/store/s3-store.js';
import { pngBase64, tempStack, testConfig, testManifest, type TempStack } from './helpers.js';

let stack: TempStack;
let server: { url: string; close(): Promise<void> };
let key: string;
let tenant: string;
beforeAll(async () => {
  stack = await tempStack();
  server = await startApiServer({ ...stack, manifest: testManifest(), config: testConfig({ maxUploadBytes: 64 * 1024 }), port: 0 });
  ({ key, tenant } = await ensureLocalApiKey(stack.store));
});
afterAll(async () => {
  await server?.close();
  await stack?.cleanup();
});

async function call(method: string, path: string, body?: unknown, opts: { key?: string; raw?: Buffer } = {}) {
  const res = await fetch(server.url + path, {
    method,
    headers: { authorization: `Bearer ${opts.key ?? key}`, 'content-type': opts.raw ? 'image/png' : 'application/json' },
    body: opts.raw ? new Uint8Array(opts.raw) : body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, any> };
}
const png = (w = 32, h = 32) => Buffer.from(pngBase64(w, h), 'base64');

/** Declares and PUTs `bytes`; returns the upload id. */
async function upload(bytes: Buffer, opts: { key?: string } = {}): Promise<string> {
  const made = await call('POST', '/v1/uploads', { bytes: bytes.length }, opts);
  expect(made.status).toBe(201);
  expect(made.json.upload_url).toBe(`${server.url}/v1/uploads/${made.json.id}`);
  const put = await call('PUT', `/v1/uploads/${made.json.id}`, undefined, { ...opts, raw: bytes });
  expect(put.status).toBe(200);
  return made.json.id;
}

describe('uploads', () => {
  test('an uploaded PNG becomes a starting frame of the job, byte for byte', async () => {
    const bytes = png();
    const id = await upload(bytes);
    expect(id).toMatch(/^upl_[0-9a-f]{24}$/);
    // Twice is refused: an upload is written once.
    expect((await call('PUT', `/v1/uploads/${id}`, undefined, { raw: bytes })).status).toBe(409);
    const job = await call('POST', '/v1/videos', { frames: 4, init_frames: [id, pngBase64()] });
    expect(job.status).toBe(202);
    const stored = (await readJob(stack.store, tenant, job.json.id))!.job;
    expect(stored.request.init_frames.count).toBe(2);
    expect((await stack.store.get(stored.request.init_frames.keys[0]))!.body.equals(bytes)).toBe(true);
  });

  test('bad uploads and bad upload ids are 4xx naming the field, and no job is written', async () => {
    const before = (await stack.store.list('jobs/')).length;
    // Declared too large, or not declared at all.
    expect(await call('POST', '/v1/uploads', { bytes: 64 * 1024 + 1 })).toMatchObject({ status: 400, json: { error: { field: 'bytes' } } });
    expect(await call('POST', '/v1/uploads', { bytes: 10, extra: 1 })).toMatchObject({ status: 400, json: { error: { field: 'extra' } } });
    expect((await call('PUT', '/v1/uploads/upl_000000000000000000000000', undefined, { raw: png() })).status).toBe(404);
    // More bytes than declared.
    const small = await call('POST', '/v1/uploads', { bytes: 10 });
    expect(await call('PUT', `/v1/uploads/${small.json.id}`, undefined, { raw: png() })).toMatchObject({ status: 413, json: { error: { field: 'body' } } });
    // Declared but never uploaded; never declared; another tenant's; not a frame of this model.
    const otherKey = await createApiKey(stack.store, 'uploader-2');
    const theirs = await upload(png(), { key: otherKey });
    const wrongSize = await upload(png(16, 16));
    for (const [entry, message] of [
      [small.json.id, /never uploaded/],
      ['upl_0123456789abcdef01234567', /never uploaded/],
      [theirs, /never uploaded/],
      [wrongSize, /frame size mismatch/],
    ] as const) {
      const res = await call('POST', '/v1/videos', { frames: 4, init_frames: [pngBase64(), entry] });
      expect(res.status, entry).toBe(400);
      expect(res.json.error.field).toBe('init_frames.1');
      expect(res.json.error.message).toMatch(message);
    }
    // An expired upload.
    const old = await upload(png());
    await stack.store.put(uploadKey(tenant, old, 'json'), JSON.stringify({ bytes: 100, expires_at: '2020-01-01T00:00:00.000Z' }));
    expect((await call('POST', '/v1/videos', { frames: 4, init_frames: [old] })).json.error).toMatchObject({ field: 'init_frames.0', message: expect.stringMatching(/expired/) });
    expect((await stack.store.list('jobs/')).length).toBe(before);
  });

  test('on S3 the upload URL is a presigned PUT whose length and type are signed', async () => {
    const s3 = new S3Store({ client: new S3Client({ region: 'eu-west-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' } }), bucket: 'b' });
    const url = new URL(await s3.presignPut!('uploads/t/upl_0.png', { expiresSec: 600, contentLength: 1234, contentType: 'image/png' }));
    expect(url.pathname).toContain('uploads/t/upl_0.png');
    expect(url.searchParams.get('X-Amz-Expires')).toBe('600');
    expect(url.searchParams.get('X-Amz-SignedHeaders')!.split(';')).toEqual(expect.arrayContaining(['content-length', 'content-type', 'host']));
  });
});
