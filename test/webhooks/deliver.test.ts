// processWebhookMessage step by step, with an injected clock, jitter, resolver and POST.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Job } from '../../shared/schemas/job.js';
import type { SendOptions, TaskQueue } from '../../shared/queue/task-queue.js';
import { MAX_QUEUE_DELAY_SEC, processWebhookMessage, type DeliveryDeps } from '../../shared/webhooks/deliver.js';
import { webhookEventId, type WebhookMessage } from '../../shared/webhooks/message.js';
import { getOrCreateWebhookSecret } from '../../shared/webhooks/secrets.js';
import { verifyWebhook } from '../../shared/webhooks/signature.js';
import { S3Store } from '../../shared/store/s3-store.js';
import { tempStack, type TempStack } from '../api/helpers.js';
import { startS3Shim } from '../shared/s3-shim.js';

let stack: TempStack;
beforeEach(async () => { stack = await tempStack(); });
afterEach(() => stack.cleanup());

const NOW = new Date('2030-01-01T00:00:00.000Z');

function job(webhook = 'https://hooks.example.com/x'): Job {
  return {
    id: 'vid_d', tenant: 'local', status: 'succeeded',
    request: { frames: 8, seed: 1, guidance: 2, steps: 2, init_frames: { count: 0, keys: [] }, ...(webhook ? { webhook } : {}), webhook_events_filter: ['completed'] },
    model: { name: 'm', sha256: 'a'.repeat(64) },
    progress: { chunks_done: 2, chunks_total: 2, frames_done: 8, frames_total: 8 },
    created_at: NOW.toISOString(), updated_at: NOW.toISOString(), metrics: { chunk_seconds: [] }, outputs: {}, cancel_requested: false,
  };
}

function message(over: Partial<WebhookMessage> = {}, j = job()): string {
  const m: WebhookMessage = { id: webhookEventId(j, 'completed'), type: 'completed', job_id: j.id, tenant: j.tenant, created_at: NOW.toISOString(), payload: { job: j }, attempt: 1, ...over };
  return JSON.stringify(m);
}

interface Sent { body: WebhookMessage; opts: SendOptions }
const recorder = (sent: Sent[]): TaskQueue => ({ send: async (body: string, opts: SendOptions) => { sent.push({ body: JSON.parse(body), opts }); return { id: String(sent.length) }; } }) as unknown as TaskQueue;

interface Posted { url: string; headers: Record<string, string>; body: string }

function deps(over: Partial<DeliveryDeps> & { status?: number; fail?: unknown } = {}) {
  const sent: Sent[] = [], dead: Sent[] = [], posted: Posted[] = [];
  const { status = 204, fail, ...rest } = over;
  const d: DeliveryDeps = {
    store: stack.store,
    webhookQueue: recorder(sent),
    deadLetterQueue: recorder(dead),
    policy: { requireHttps: true, allowLoopback: false },
    now: () => NOW,
    random: () => 0.5,
    retryScheduleSec: [10, 100, 2000],
    resolve: async () => [{ address: '93.184.216.34', family: 4 }],
    post: async (url, headers, body) => {
      posted.push({ url: url.toString(), headers: headers as Record<string, string>, body });
      if (fail) throw fail;
      return { status };
    },
    ...rest,
  };
  return { d, sent, dead, posted };
}

const failures = async () => Promise.all((await stack.store.list('jobs/local/vid_d/webhooks/')).map(async (k) => JSON.parse((await stack.store.get(k))!.body.toString())));

describe('processWebhookMessage', () => {
  it('delivers a signed POST with the Standard Webhooks headers', async () => {
    const { d, posted, sent } = deps({ status: 200 });
    expect(await processWebhookMessage(d, message())).toEqual({ kind: 'delivered', status: 200 });
    expect(sent).toEqual([]);
    const [p] = posted;
    expect(p.url).toBe('https://hooks.example.com/x');
    expect(p.headers['webhook-id']).toBe(webhookEventId(job(), 'completed'));
    expect(p.headers['webhook-timestamp']).toBe(String(NOW.getTime() / 1000));
    expect(p.headers['user-agent']).toBe('ca2vdm-webhooks/1');
    const secret = await getOrCreateWebhookSecret(stack.store, 'local');
    const h = { id: p.headers['webhook-id'], timestamp: p.headers['webhook-timestamp'], signature: p.headers['webhook-signature'] };
    expect(verifyWebhook(secret, h, p.body, { nowSec: NOW.getTime() / 1000 })).toBe(true);
    expect(JSON.parse(p.body)).toMatchObject({ type: 'completed', timestamp: NOW.toISOString(), data: { id: 'vid_d', status: 'succeeded' } });
  });

  it('counts 200-299 as delivered and retries 199 and 300', async () => {
    expect((await processWebhookMessage(deps({ status: 299 }).d, message())).kind).toBe('delivered');
    expect((await processWebhookMessage(deps({ status: 300 }).d, message())).kind).toBe('retrying');
    expect((await processWebhookMessage(deps({ status: 199 }).d, message())).kind).toBe('retrying');
  });

  it('retries after the schedule wait plus jitter, as the next attempt, with the reason', async () => {
    const { d, sent } = deps({ status: 503 });
    expect(await processWebhookMessage(d, message())).toEqual({ kind: 'retrying', attempt: 2, delaySec: 11, reason: 'receiver answered 503' });
    expect(sent).toHaveLength(1);
    const [{ body, opts }] = sent;
    expect(body).toMatchObject({ attempt: 2, not_before: new Date(NOW.getTime() + 11_000).toISOString(), last_error: 'receiver answered 503' });
    expect(opts).toEqual({ groupId: body.id, dedupId: `${body.id}:2`, delaySec: 11 });
    // The second wait of the schedule, with the most jitter: 100 s x 1.2.
    const again = deps({ status: 503, random: () => 1 });
    expect(await processWebhookMessage(again.d, message({ attempt: 2 }))).toMatchObject({ attempt: 3, delaySec: 120 });
  });

  it('caps a queue delay at the SQS maximum and re-queues a not-yet-due message for what remains', async () => {
    const { d, sent } = deps({ status: 500, random: () => 0 });
    expect(await processWebhookMessage(d, message({ attempt: 3 }))).toMatchObject({ delaySec: 2000 });
    expect(sent[0].opts.delaySec).toBe(MAX_QUEUE_DELAY_SEC);
    const notBefore = new Date(NOW.getTime() + 90_500).toISOString();
    expect(await processWebhookMessage(d, message({ attempt: 2, not_before: notBefore }))).toEqual({ kind: 'waiting' });
    expect(sent[1].body).toMatchObject({ attempt: 2, not_before: notBefore });
    expect(sent[1].opts).toEqual({ groupId: sent[1].body.id, dedupId: `${sent[1].body.id}:2:wait:${NOW.getTime()}`, delaySec: 91 });
  });

  it('keeps a fractional delay under one second (the local queue takes fractions)', async () => {
    const { d, sent } = deps({ status: 500, random: () => 0, retryScheduleSec: [0.25] });
    await processWebhookMessage(d, message());
    expect(sent[0].opts.delaySec).toBe(0.25);
  });

  it('a message that is due now is delivered, not re-queued', async () => {
    const { d, sent, posted } = deps();
    expect((await processWebhookMessage(d, message({ not_before: NOW.toISOString() }))).kind).toBe('delivered');
    expect([sent.length, posted.length]).toEqual([0, 1]);
  });

  it('gives up after the last scheduled try: dead letter, failure noted on the job with the last status', async () => {
    const { d, sent, dead } = deps({ status: 502 });
    expect(await processWebhookMessage(d, message({ attempt: 4 }))).toEqual({ kind: 'failed', reason: 'receiver answered 502 after 4 tries' });
    expect(sent).toEqual([]);
    expect(dead).toHaveLength(1);
    expect(dead[0].body).toMatchObject({ attempt: 4, last_error: 'receiver answered 502 after 4 tries' });
    expect(dead[0].opts).toEqual({ groupId: dead[0].body.id, dedupId: `${dead[0].body.id}:dead` });
    expect(await failures()).toEqual([{ event_id: dead[0].body.id, type: 'completed', attempts: 4, reason: 'receiver answered 502 after 4 tries', last_status: 502, failed_at: NOW.toISOString() }]);
  });

  it('notes the chunk of an undelivered output event', async () => {
    const { d } = deps({ status: 410 });
    await processWebhookMessage(d, message({ type: 'output', chunk: 3, id: webhookEventId(job(), 'output', 3) }));
    expect(await failures()).toMatchObject([{ type: 'output', chunk: 3, attempts: 1 }]);
  });

  it('stores the failure note as JSON (content type) where the store keeps one', async () => {
    const shim = await startS3Shim();
    try {
      const store = new S3Store({ client: shim.client, bucket: shim.bucket });
      const { d } = deps({ status: 410, store });
      await processWebhookMessage(d, message());
      const [key] = await store.list('jobs/local/vid_d/webhooks/');
      expect((await store.get(key))!.contentType).toBe('application/json');
    } finally {
      await shim.close();
    }
  });

  it('links to the job by path alone when no base URL is configured', async () => {
    const { d, posted } = deps({ status: 200 });
    await processWebhookMessage(d, message());
    expect(JSON.parse(posted[0].body).data.urls.get).toBe('/v1/videos/vid_d');
  });

  it('stops at 410 Gone on the first try', async () => {
    const { d, sent } = deps({ status: 410 });
    expect(await processWebhookMessage(d, message())).toEqual({ kind: 'failed', reason: 'receiver answered 410 Gone' });
    expect(sent).toEqual([]);
    expect(await failures()).toMatchObject([{ attempts: 1, last_status: 410 }]);
  });

  it('retries network errors and timeouts, naming them', async () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 93.184.216.34:443'), { code: 'ECONNREFUSED' });
    expect(await processWebhookMessage(deps({ fail: refused }).d, message())).toMatchObject({ kind: 'retrying', reason: 'ECONNREFUSED: connect ECONNREFUSED 93.184.216.34:443' });
    const timeout = Object.assign(new Error('The operation was aborted due to timeout'), { name: 'TimeoutError' });
    expect(await processWebhookMessage(deps({ fail: timeout }).d, message())).toMatchObject({ kind: 'retrying', reason: 'timed out' });
    const abort = Object.assign(new Error('aborted'), { name: 'AbortError' });
    expect(await processWebhookMessage(deps({ fail: abort }).d, message())).toMatchObject({ reason: 'timed out' });
    expect(await processWebhookMessage(deps({ fail: new Error('socket hang up') }).d, message())).toMatchObject({ reason: 'socket hang up' });
    expect(await processWebhookMessage(deps({ fail: 'weird' }).d, message())).toMatchObject({ reason: 'weird' });
  });

  it('keeps at most 500 characters of a reason', async () => {
    const { d, sent } = deps({ fail: new Error('x'.repeat(600)), retryScheduleSec: [1] });
    await processWebhookMessage(d, message());
    expect(sent[0].body.last_error).toBe('x'.repeat(500));
    const last = deps({ fail: new Error('y'.repeat(600)), retryScheduleSec: [1] });
    await processWebhookMessage(last.d, message({ attempt: 2 }));
    expect(last.dead[0].body.last_error).toHaveLength(500);
    expect((await failures())[0].reason).toHaveLength(500);
  });

  it('refuses an address that became private (no POST, failed) and retries a host that does not resolve', async () => {
    const priv = deps({ resolve: async () => [{ address: '10.0.0.7', family: 4 }] });
    expect((await processWebhookMessage(priv.d, message())).kind).toBe('failed');
    expect(priv.posted).toEqual([]);
    const gone = deps({ resolve: async () => { throw Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' }); } });
    expect(await processWebhookMessage(gone.d, message())).toMatchObject({ kind: 'retrying', attempt: 2 });
    expect(gone.posted).toEqual([]);
  });

  it('drops what is not a webhook event, or an event of a job without a webhook', async () => {
    const { d, sent, posted } = deps();
    expect((await processWebhookMessage(d, 'not json')).kind).toBe('invalid');
    expect((await processWebhookMessage(d, JSON.stringify({ id: 'x' }))).kind).toBe('invalid');
    expect(await processWebhookMessage(d, message({}, job('')))).toEqual({ kind: 'invalid', reason: 'job has no webhook' });
    const broken = JSON.parse(message());
    broken.payload = { job: { id: 'vid_d' } };
    expect((await processWebhookMessage(d, JSON.stringify(broken))).kind).toBe('invalid');
    expect([sent.length, posted.length]).toEqual([0, 0]);
  });
});
