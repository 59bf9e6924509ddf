import * as http from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startApiServer } from '../../functions/local/server.js';
import { ensureLocalApiKey } from '../../shared/auth/api-keys.js';
import { tempStack, testConfig, testManifest, type TempStack } from './helpers.js';

let stack: TempStack;
let api: { url: string; close(): Promise<void> };
let key: string;
beforeAll(async () => {
  stack = await tempStack();
  key = (await ensureLocalApiKey(stack.store)).key;
  api = await startApiServer({ ...stack, manifest: testManifest(), config: testConfig(), port: 0 });
});
afterAll(async () => { await api.close(); await stack.cleanup(); });

function request(method: string, path: string, body?: string, headers: Record<string, string> = {}) {
  return new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = http.request(`${api.url}${path}`, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('embedded API server, hostile input', () => {
  it('echoes a bounded part of an oversized unknown key in the error', async () => {
    const long = 'k'.repeat(100_000);
    const res = await request('POST', '/v1/videos', JSON.stringify({ frames: 4, [long]: 1 }));
    expect(res.status).toBe(400);
    expect(JSON.parse(res.text).error.code).toBe('invalid_request');
    expect(res.text.length).toBeLessThan(2_000);
  });

  it('builds links from its own address, whatever Host header the request carries', async () => {
    const res = await request('POST', '/v1/videos', JSON.stringify({ frames: 4, seed: 1 }), { host: 'evil.example' });
    expect(res.status).toBe(202);
    const urls = JSON.parse(res.text).urls as { get: string; cancel: string };
    expect(urls.get.startsWith(`${api.url}/v1/videos/`)).toBe(true);
    expect(urls.cancel).not.toContain('evil.example');
  });

  it('does not log a client that hangs up mid-upload as an unhandled error', async () => {
    const logged = vi.spyOn(console, 'error');
    await new Promise<void>((resolve) => {
      const req = http.request(`${api.url}/v1/videos`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': '5000' } });
      req.on('error', () => resolve());
      req.write('{"frames": 4, "la');
      setTimeout(() => req.destroy(), 50);
    });
    // The server has seen the hang-up by the time it answers the next request on a new connection.
    await new Promise((r) => setTimeout(r, 200));
    expect((await request('GET', '/v1/videos')).status).toBe(200);
    expect(logged.mock.calls.filter((c) => String(c[0]).includes('unhandled error'))).toEqual([]);
    logged.mockRestore();
  });
});
