import { createHmac, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { startApiServer } from '../../functions/local/server.js';
import { Ca2vdmClient } from '../../shared/api/client.js';
import { ensureLocalApiKey } from '../../shared/auth/api-keys.js';
import { readJob } from '../../shared/jobs/job-store.js';
import type { Job } from '../../shared/schemas/job.js';
import { processWebhookMessage } from '../../shared/webhooks/deliver.js';
import { startWebhookDispatcher } from '../../shared/webhooks/dispatcher.js';
import { emitJobEvent } from '../../shared/webhooks/emit.js';
import { tempStack, testConfig, testManifest, type TempStack } from '../api/helpers.js';

interface Delivery {
  id: string;
  timestamp: string;
  body: string;
  verified: boolean;
  answered: number;
}

/** Standard Webhooks verification written from the spec, independently of shared/webhooks/signature.ts. */
function independentVerify(secret: string, h: http.IncomingHttpHeaders, body: string): boolean {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const signed = `${h['webhook-id']}.${h['webhook-timestamp']}.${body}`;
  const expected = createHmac('sha256', key).update(signed, 'utf8').digest();
  if (Math.abs(Date.now() / 1000 - Number(h['webhook-timestamp'])) > 300) return false;
  return String(h['webhook-signature'])
    .split(' ')
    .map((s) => s.split(','))
    .some(([v, sig]) => v === 'v1' && sig !== undefined && Buffer.from(sig, 'base64').length === 32 && timingSafeEqual(Buffer.from(sig, 'base64'), expected));
}

async function receiver(answer: (n: number) => number | 'hang') {
  const deliveries: Delivery[] = [];
  let secret = '';
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const status = answer(deliveries.length);
      deliveries.push({
        id: String(req.headers['webhook-id']),
        timestamp: String(req.headers['webhook-timestamp']),
        body,
        verified: independentVerify(secret, req.headers, body),
        answered: status === 'hang' ? 0 : status,
      });
      if (status !== 'hang') res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    deliveries,
    setSecret: (s: string) => (secret = s),
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

let stack: TempStack;
let api: { url: string; close(): Promise<void> };
let client: Ca2vdmClient;
let secret: string;
const closers: (() => Promise<void>)[] = [];

beforeEach(async () => {
  stack = await tempStack();
  api = await startApiServer({ ...stack, manifest: testManifest(), config: testConfig(), port: 0 });
  const { key } = await ensureLocalApiKey(stack.store);
  client = new Ca2vdmClient({ baseUrl: api.url, apiKey: key });
  secret = (await client.webhookSecret()).key;
});
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
  await api.close();
  await stack.cleanup();
});

async function jobWithWebhook(url: string, filter?: ('start' | 'output' | 'completed')[]): Promise<Job> {
  const { id } = await client.createVideo({ frames: 8, webhook: url, ...(filter ? { webhook_events_filter: filter } : {}) });
  return (await readJob(stack.store, 'local', id))!.job;
}

function dispatcher(retryScheduleSec: number[], timeoutMs?: number) {
  const d = startWebhookDispatcher({
    store: stack.store,
    webhookQueue: stack.webhookQueue,
    allowLoopback: true,
    baseUrl: api.url,
    retryScheduleSec,
    ...(timeoutMs ? { deliveryOverrides: { timeoutMs } } : {}),
  });
  closers.unshift(() => d.close());
  return d;
}

async function until(cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a receiver failing the first 3 times gets the event exactly once more, same webhook-id, every try signed', async () => {
  const rx = await receiver((n) => (n < 3 ? 500 : 204));
  closers.push(rx.close);
  rx.setSecret(secret);
  const job = await jobWithWebhook(rx.url);
  dispatcher([0.05, 0.05, 0.05, 0.05]);
  await emitJobEvent(stack.webhookQueue, { ...job, status: 'succeeded' }, 'completed');
  await emitJobEvent(stack.webhookQueue, { ...job, status: 'succeeded' }, 'completed'); // a retried worker step
  await until(() => rx.deliveries.some((d) => d.answered === 204));
  await new Promise((r) => setTimeout(r, 400)); // nothing more may arrive
  expect(rx.deliveries.map((d) => d.answered)).toEqual([500, 500, 500, 204]);
  expect(new Set(rx.deliveries.map((d) => d.id)).size).toBe(1);
  expect(rx.deliveries.every((d) => d.verified)).toBe(true);
  const body = JSON.parse(rx.deliveries[3].body);
  expect(body).toMatchObject({ type: 'completed', data: { id: job.id, status: 'succeeded', urls: { get: `${api.url}/v1/videos/${job.id}` } } });
  expect(await stack.webhookQueue.depth()).toBe(0);
});

test('output events per chunk get distinct ids; filtered-out types are not sent', async () => {
  const rx = await receiver(() => 200);
  closers.push(rx.close);
  rx.setSecret(secret);
  const job = await jobWithWebhook(rx.url, ['output']);
  dispatcher([0.05]);
  await emitJobEvent(stack.webhookQueue, job, 'start');
  await emitJobEvent(stack.webhookQueue, job, 'output', { chunk: 0 });
  await emitJobEvent(stack.webhookQueue, job, 'output', { chunk: 1 });
  await emitJobEvent(stack.webhookQueue, job, 'completed');
  await until(() => rx.deliveries.length === 2);
  await new Promise((r) => setTimeout(r, 300));
  expect(rx.deliveries).toHaveLength(2);
  expect(new Set(rx.deliveries.map((d) => d.id)).size).toBe(2);
  expect(rx.deliveries.map((d) => JSON.parse(d.body).type)).toEqual(['output', 'output']);
  expect(rx.deliveries.every((d) => d.verified)).toBe(true);
});

test('410 Gone stops retrying and is noted on the job', async () => {
  const rx = await receiver(() => 410);
  closers.push(rx.close);
  const job = await jobWithWebhook(rx.url);
  dispatcher([0.05, 0.05]);
  await emitJobEvent(stack.webhookQueue, job, 'completed');
  await until(async () => (await client.getVideo(job.id)).webhook_failures !== undefined);
  await new Promise((r) => setTimeout(r, 300));
  expect(rx.deliveries).toHaveLength(1);
  expect((await client.getVideo(job.id)).webhook_failures).toEqual([
    expect.objectContaining({ type: 'completed', attempts: 1, last_status: 410, reason: expect.stringMatching(/410/) }),
  ]);
});

test('after the last try the event is dead-lettered and noted on the job', async () => {
  const rx = await receiver(() => 503);
  closers.push(rx.close);
  const job = await jobWithWebhook(rx.url);
  dispatcher([0.02, 0.02]);
  await emitJobEvent(stack.webhookQueue, job, 'completed');
  await until(async () => (await client.getVideo(job.id)).webhook_failures !== undefined);
  expect(rx.deliveries).toHaveLength(3);
  const [failure] = (await client.getVideo(job.id)).webhook_failures!;
  expect(failure).toMatchObject({ attempts: 3, last_status: 503, event_id: rx.deliveries[0].id });
});

test('a receiver that does not answer within the timeout is retried', async () => {
  const rx = await receiver((n) => (n === 0 ? 'hang' : 200));
  closers.push(rx.close);
  const job = await jobWithWebhook(rx.url);
  dispatcher([0.05], 300);
  await emitJobEvent(stack.webhookQueue, job, 'completed');
  await until(() => rx.deliveries.some((d) => d.answered === 200));
  expect(rx.deliveries.map((d) => d.answered)).toEqual([0, 200]);
  expect(rx.deliveries[0].id).toBe(rx.deliveries[1].id);
});

test('DNS rebinding: a host that resolves to a private address at delivery time is refused, not posted', async () => {
  const job = await jobWithWebhook('http://127.0.0.1:9/hook');
  const rebound = { ...job, request: { ...job.request, webhook: 'https://hooks.example.com/x' } };
  await emitJobEvent(stack.webhookQueue, rebound, 'completed');
  const [msg] = await stack.webhookQueue.receive({ visibilitySec: 30 });
  let posted = false;
  const outcome = await processWebhookMessage(
    {
      store: stack.store,
      webhookQueue: stack.webhookQueue,
      policy: { requireHttps: true, allowLoopback: false },
      resolve: async () => [{ address: '169.254.169.254', family: 4 }],
      post: async () => {
        posted = true;
        return { status: 200 };
      },
    },
    msg.body,
  );
  expect(outcome.kind).toBe('failed');
  expect(posted).toBe(false);
  expect((await client.getVideo(job.id)).webhook_failures?.[0].reason).toMatch(/metadata|private/);
});

test('a long backoff is re-queued in steps until due (SQS caps delays at 15 min)', async () => {
  const job = await jobWithWebhook('http://127.0.0.1:9/hook');
  let now = new Date('2030-01-01T00:00:00Z');
  const sent: { delaySec?: number; body: string }[] = [];
  const queue = { ...stack.webhookQueue, send: async (body: string, o: { delaySec?: number }) => (sent.push({ body, delaySec: o.delaySec }), { id: 'x' }) };
  const deps = {
    store: stack.store,
    webhookQueue: queue as never,
    policy: { requireHttps: false, allowLoopback: true },
    now: () => now,
    random: () => 0,
    retryScheduleSec: [3600],
    post: async () => ({ status: 500 }),
  };
  await emitJobEvent(stack.webhookQueue, job, 'completed');
  const [msg] = await stack.webhookQueue.receive({ visibilitySec: 30 });
  expect(await processWebhookMessage(deps, msg.body)).toMatchObject({ kind: 'retrying', attempt: 2, delaySec: 3600 });
  expect(sent[0].delaySec).toBe(900);
  now = new Date(now.getTime() + 900_000);
  expect(await processWebhookMessage(deps, sent[0].body)).toEqual({ kind: 'waiting' });
  expect(sent[1].delaySec).toBe(900);
  now = new Date(now.getTime() + 2_700_000);
  expect(await processWebhookMessage(deps, sent[1].body)).toMatchObject({ kind: 'failed' });
});
