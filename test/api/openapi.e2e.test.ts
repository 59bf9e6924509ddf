/**
 * The OpenAPI document is valid OpenAPI 3.1 (checked by a real validator), and every route's real
 * responses, through the embedded server, match what it documents: every documented status code of
 * every operation is produced at least once and its body validated against the documented schema.
 */
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiServer } from '../../functions/local/server.js';
import { API_ROUTES, pathParameters } from '../../shared/api/routes.js';
import { ensureLocalApiKey } from '../../shared/auth/api-keys.js';
import { updateJob } from '../../shared/jobs/job-store.js';
import { frameKey } from '../../shared/keys.js';
import { pngBase64, tempStack, testConfig, testManifest, type TempStack } from './helpers.js';

type Doc = {
  paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: { $ref?: string } }> }> }>>;
  components: { schemas: Record<string, object> };
};

let stack: TempStack;
let server: { url: string; close(): Promise<void> };
let key: string;
let tenant: string;
let doc: Doc;
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats.default(ajv);
/** `METHOD /path/template STATUS` of every response checked. */
const seen = new Set<string>();

beforeAll(async () => {
  stack = await tempStack();
  server = await startApiServer({ ...stack, manifest: testManifest(), config: testConfig({ maxBodyBytes: 4096 }), port: 0 });
  ({ key, tenant } = await ensureLocalApiKey(stack.store));
  doc = (await (await fetch(`${server.url}/v1/openapi.json`)).json()) as Doc;
  for (const [name, schema] of Object.entries(doc.components.schemas)) ajv.addSchema(schema, name);
});
afterAll(async () => {
  await server?.close();
  await stack?.cleanup();
});

/** Calls the API and checks the response against the document's entry for (template, method, status). */
async function call(
  method: string,
  template: string,
  path: string,
  opts: { body?: string; headers?: Record<string, string>; auth?: boolean } = {},
): Promise<{ status: number; json: unknown; text: string }> {
  const headers: Record<string, string> = { ...(opts.auth === false ? {} : { authorization: `Bearer ${key}` }), ...opts.headers };
  const res = await fetch(server.url + path, { method, headers, body: opts.body });
  const text = await res.text();
  const documented = doc.paths[template]?.[method.toLowerCase()]?.responses[String(res.status)];
  expect(documented, `${method} ${template} answered ${res.status}, which the document does not list: ${text.slice(0, 200)}`).toBeDefined();
  const type = (res.headers.get('content-type') ?? '').split(';')[0];
  const content = documented!.content ?? {};
  expect(Object.keys(content), `${method} ${template} ${res.status} content type`).toContain(
    content[type] ? type : 'application/octet-stream',
  );
  let json: unknown = undefined;
  const ref = content[type]?.schema.$ref;
  if (type === 'application/json') {
    json = JSON.parse(text);
    if (ref) {
      const validate = ajv.getSchema(ref.replace('#/components/schemas/', ''))!;
      expect(validate(json), `${method} ${template} ${res.status}: ${ajv.errorsText(validate.errors)}`).toBe(true);
    }
  }
  seen.add(`${method} ${template} ${res.status}`);
  return { status: res.status, json, text };
}

describe('OpenAPI document', () => {
  it('is valid OpenAPI 3.1', async () => {
    const result = await new Validator().validate(doc as never);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect((doc as unknown as { openapi: string }).openapi).toBe('3.1.0');
  });

  it('matches every route\'s real responses, each documented status at least once', async () => {
    const json = { 'content-type': 'application/json' };
    const create = (body: unknown, headers: Record<string, string> = {}) =>
      call('POST', '/v1/videos', '/v1/videos', { body: JSON.stringify(body), headers: { ...json, ...headers } });

    // Create: new, replayed, invalid, unauthenticated, conflicting, too large, not JSON.
    const made = await create({ frames: 8, label: '2 balls', seed: 1, init_frames: [pngBase64()] }, { 'idempotency-key': 'k1' });
    expect(made.status).toBe(202);
    const id = (made.json as { id: string }).id;
    expect((await create({ frames: 8, label: '2 balls', seed: 1, init_frames: [pngBase64()] }, { 'idempotency-key': 'k1' })).status).toBe(200);
    expect((await create({ frames: 0 })).status).toBe(400);
    expect((await call('POST', '/v1/videos', '/v1/videos', { body: '{"frames":1}', headers: json, auth: false })).status).toBe(401);
    expect((await create({ frames: 9 }, { 'idempotency-key': 'k1' })).status).toBe(409);
    expect((await create({ frames: 1, init_frames: ['A'.repeat(5000)] })).status).toBe(413);
    expect((await call('POST', '/v1/videos', '/v1/videos', { body: 'frames=1', headers: { 'content-type': 'text/plain' } })).status).toBe(415);

    // List, get, stream, files, secret: success, bad input, no key, unknown video.
    expect((await call('GET', '/v1/videos', '/v1/videos?limit=5')).status).toBe(200);
    expect((await call('GET', '/v1/videos', '/v1/videos?limit=0')).status).toBe(400);
    expect((await call('GET', '/v1/videos', '/v1/videos', { auth: false })).status).toBe(401);
    await stack.store.put(frameKey(tenant, id, 0, 0), Buffer.from(pngBase64(), 'base64'), { contentType: 'image/png' });
    for (const [template, path] of [
      ['/v1/videos/{id}', `/v1/videos/${id}`],
      ['/v1/videos/{id}/stream.m3u8', `/v1/videos/${id}/stream.m3u8`],
      ['/v1/videos/{id}/files/{path}', `/v1/videos/${id}/files/frames/000000-000.png`],
    ]) {
      expect((await call('GET', template, path)).status).toBe(200);
      expect((await call('GET', template, path, { auth: false })).status).toBe(401);
      expect((await call('GET', template, path.replace(id, 'vid_nope'))).status).toBe(404);
    }
    expect((await call('GET', '/v1/webhooks/default/secret', '/v1/webhooks/default/secret')).status).toBe(200);
    expect((await call('GET', '/v1/webhooks/default/secret', '/v1/webhooks/default/secret', { auth: false })).status).toBe(401);
    expect((await call('GET', '/v1/openapi.json', '/v1/openapi.json', { auth: false })).status).toBe(200);

    // Extend (and fork's 404): not finished yet, finished, replayed, unknown, invalid, no key.
    const ext = (path: string, body: unknown, headers: Record<string, string> = {}, auth = true) =>
      call('POST', '/v1/videos/{id}/extend', path, { body: JSON.stringify(body), headers: { ...json, ...headers }, auth });
    const parent = ((await create({ frames: 8, label: '2 balls', seed: 3 })).json as { id: string }).id;
    expect((await ext(`/v1/videos/${parent}/extend`, { frames: 4 })).status).toBe(409);
    await updateJob(stack.store, tenant, parent, (j) => ({ ...j, status: 'succeeded' }));
    expect((await ext(`/v1/videos/${parent}/extend`, { frames: 4 }, { 'idempotency-key': 'x1' })).status).toBe(202);
    expect((await ext(`/v1/videos/${parent}/extend`, { frames: 4 }, { 'idempotency-key': 'x1' })).status).toBe(200);
    expect((await ext('/v1/videos/vid_nope/extend', { frames: 4 })).status).toBe(404);
    expect((await ext(`/v1/videos/${parent}/extend`, { frames: 0 })).status).toBe(400);
    expect((await ext(`/v1/videos/${parent}/extend`, { frames: 4 }, {}, false)).status).toBe(401);
    expect((await create({ frames: 4, from: { video: 'vid_nope', frame: 4 } })).status).toBe(404);

    // Uploads: declare, PUT, and every refusal.
    const png = Buffer.from(pngBase64(), 'base64');
    const upload = await call('POST', '/v1/uploads', '/v1/uploads', { body: JSON.stringify({ bytes: png.length }), headers: json });
    expect(upload.status).toBe(201);
    expect((await call('POST', '/v1/uploads', '/v1/uploads', { body: '{"bytes":0}', headers: json })).status).toBe(400);
    expect((await call('POST', '/v1/uploads', '/v1/uploads', { body: '{"bytes":1}', headers: json, auth: false })).status).toBe(401);
    const uploadPath = `/v1/uploads/${(upload.json as { id: string }).id}`;
    const put = (path: string, bytes: Buffer, auth = true) =>
      call('PUT', '/v1/uploads/{id}', path, { body: new Uint8Array(bytes) as never, headers: { 'content-type': 'image/png' }, auth });
    expect((await put(uploadPath, Buffer.concat([png, png]))).status).toBe(413);
    expect((await put(uploadPath, png)).status).toBe(200);
    expect((await put(uploadPath, png)).status).toBe(409);
    expect((await put('/v1/uploads/upl_000000000000000000000000', png)).status).toBe(404);
    expect((await put(uploadPath, png, false)).status).toBe(401);

    // Cancel: requested, then already requested (200), unknown, no key.
    expect((await call('POST', '/v1/videos/{id}/cancel', `/v1/videos/${id}/cancel`)).status).toBe(202);
    await updateJob(stack.store, tenant, id, (j) => ({ ...j, status: 'canceled' }));
    expect((await call('POST', '/v1/videos/{id}/cancel', `/v1/videos/${id}/cancel`)).status).toBe(200);
    expect((await call('POST', '/v1/videos/{id}/cancel', '/v1/videos/vid_nope/cancel')).status).toBe(404);
    expect((await call('POST', '/v1/videos/{id}/cancel', `/v1/videos/${id}/cancel`, { auth: false })).status).toBe(401);

    // Every documented (operation, status) was produced above.
    const documented = Object.entries(doc.paths).flatMap(([template, ops]) =>
      Object.entries(ops).flatMap(([method, op]) => Object.keys(op.responses).map((s) => `${method.toUpperCase()} ${template} ${s}`)),
    );
    expect([...seen].sort()).toEqual(documented.sort());
  });

  it('documents the parameters each route of the table declares: path, query and header names', () => {
    type Param = { name: string; in: string };
    const ops = doc.paths as Record<string, Record<string, { parameters?: Param[] }>>;
    for (const route of API_ROUTES.filter((r) => r.path.startsWith('/v1/'))) {
      const documented = (ops[route.path.replace('{path+}', '{path}')][route.method.toLowerCase()].parameters ?? []).map((p) => `${p.in} ${p.name}`);
      const declared = [
        ...pathParameters(route.path).map((n) => `path ${n}`),
        ...('query' in route ? route.query : []).map((n) => `query ${n}`),
        ...('headers' in route ? route.headers : []).map((n) => `header ${n}`),
      ];
      expect(declared.sort(), `${route.method} ${route.path}`).toEqual(documented.sort());
    }
  });

  it('documents every route the server has, and no other', () => {
    const served = API_ROUTES.map(({ method, path }) => `${method} ${path.replace('{path+}', '{path}')}`);
    const page = ['GET /', 'GET /assets/{name}']; // the web page, not part of the API
    const documented = Object.entries(doc.paths).flatMap(([template, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${template}`));
    expect(served.filter((r) => !page.includes(r)).sort()).toEqual(documented.sort());
  });
});
