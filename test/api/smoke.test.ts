import { afterAll, beforeAll, expect, test } from 'vitest';
import { startApiServer } from '../../functions/local/server.js';
import { Ca2vdmClient } from '../../shared/api/client.js';
import { ensureLocalApiKey } from '../../shared/auth/api-keys.js';
import { tempStack, testConfig, testManifest, type TempStack } from './helpers.js';

let stack: TempStack;
let server: { url: string; close(): Promise<void> };
let client: Ca2vdmClient;
beforeAll(async () => {
  stack = await tempStack();
  server = await startApiServer({ ...stack, manifest: testManifest(), config: testConfig(), port: 0 });
  const { key } = await ensureLocalApiKey(stack.store);
  client = new Ca2vdmClient({ baseUrl: server.url, apiKey: key });
});
afterAll(async () => {
  await server?.close();
  await stack?.cleanup();
});

test('create then get', async () => {
  const created = await client.createVideo({ frames: 10 });
  expect(created.status).toBe('starting');
  const got = await client.getVideo(created.id);
  expect(got.progress.chunks_total).toBe(3);
  expect(await stack.chunkQueue.depth()).toBe(1);
});
