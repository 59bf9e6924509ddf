import { DEFAULT_API_CONFIG } from '../api/config.js';
import { renderJob } from '../api/render.js';
import { webhookFailureKey } from '../api/keys.js';
import type { WebhookFailure } from '../api/render.js';
import { countWebhookFailure } from '../observability/metrics.js';
import type { TaskQueue } from '../queue/task-queue.js';
import type { ObjectStore } from '../store/object-store.js';
import { UnsafeWebhookUrlError, WebhookHostUnresolvedError } from './errors.js';
import { postWebhook, type WebhookPoster } from './http-post.js';
import { WebhookMessageSchema, WebhookPayloadSchema, type WebhookMessage } from './message.js';
import { getOrCreateWebhookSecret } from './secrets.js';
import { signWebhook } from './signature.js';
import { assertSafeWebhookUrl, systemResolver, type Resolver, type WebhookUrlPolicy } from './ssrf.js';

/**
 * Waits between tries, in seconds, before jitter: the Standard Webhooks / Svix schedule
 * (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), 8 tries over ~27.6 h. Jitter only lengthens a wait
 * (up to +20 %), so the retry window never drops under 24 h.
 */
export const DEFAULT_RETRY_SCHEDULE_SEC = [5, 300, 1800, 7200, 18000, 36000, 36000] as const;
/** Largest per-message delay SQS accepts. */
export const MAX_QUEUE_DELAY_SEC = 900;
export const DELIVERY_TIMEOUT_MS = 10_000;

export interface DeliveryDeps {
  store: ObjectStore;
  /** Where retries are re-sent (the queue the message came from). */
  webhookQueue: TaskQueue;
  policy: WebhookUrlPolicy;
  /** Base URL of the API for links in the body (embedded mode; S3 presigns). */
  baseUrl?: string;
  /**
   * Lifetime of the presigned links in the body (default: the API's, 1 h). A link signed with a
   * function role's temporary credentials dies with them, so a day-long expiry would be a promise
   * the link cannot keep; a receiver fetches the job again for fresh links.
   */
  presignExpirySec?: number;
  /** Where an event goes after its last try, for operators (AWS: the webhook DLQ). */
  deadLetterQueue?: TaskQueue;
  retryScheduleSec?: readonly number[];
  timeoutMs?: number;
  now?: () => Date;
  random?: () => number;
  resolve?: Resolver;
  post?: WebhookPoster;
}

export type DeliveryOutcome =
  | { kind: 'delivered'; status: number }
  /** Not due yet: re-queued with the remaining delay (long waits exceed the queue's delay cap). */
  | { kind: 'waiting' }
  | { kind: 'retrying'; attempt: number; delaySec: number; reason: string }
  /** Stopped for good: 410 Gone, unsafe URL, or retries exhausted. Noted on the job. */
  | { kind: 'failed'; reason: string }
  /** The message was not a webhook event; logged and dropped. */
  | { kind: 'invalid'; reason: string };

/**
 * Handles one webhook-queue message: delivers it, or re-queues it with backoff, or gives up and
 * notes the failure on the job. Returns normally in all these cases, so the caller deletes the
 * message; it throws only on infrastructure errors (store, queue), which the queue then redelivers.
 */
export async function processWebhookMessage(deps: DeliveryDeps, body: string): Promise<DeliveryOutcome> {
  const now = deps.now?.() ?? new Date();
  let msg: WebhookMessage;
  try {
    msg = WebhookMessageSchema.parse(JSON.parse(body));
  } catch (err) {
    console.error(JSON.stringify({ msg: 'invalid webhook message dropped', error: String(err) }));
    return { kind: 'invalid', reason: String(err) };
  }
  if (msg.not_before && Date.parse(msg.not_before) > now.getTime()) {
    const wait = (Date.parse(msg.not_before) - now.getTime()) / 1000;
    await requeue(deps, msg, wait, `${msg.id}:${msg.attempt}:wait:${now.getTime()}`);
    return { kind: 'waiting' };
  }
  const payload = WebhookPayloadSchema.safeParse(msg.payload);
  if (!payload.success) return { kind: 'invalid', reason: payload.error.message };
  const job = payload.data.job;
  const url = job.request.webhook;
  if (!url) return { kind: 'invalid', reason: 'job has no webhook' };

  // The URL check (again at delivery: DNS may have changed since submit) and the POST are the
  // receiver's side and decide retry/fail; reading the secret or the job's files is ours and throws.
  let target: URL;
  try {
    target = await assertSafeWebhookUrl(url, deps.policy, deps.resolve ?? systemResolver);
  } catch (err) {
    if (err instanceof UnsafeWebhookUrlError) return fail(deps, msg, err.message, now);
    if (!(err instanceof WebhookHostUnresolvedError)) throw err;
    return retry(deps, msg, err.message, now);
  }
  const secret = await getOrCreateWebhookSecret(deps.store, job.tenant);
  const data = await renderJob(job, {
    store: deps.store,
    baseUrl: deps.baseUrl ?? '',
    presignExpirySec: deps.presignExpirySec ?? DEFAULT_API_CONFIG.presignExpirySec,
    now: () => now,
  });
  const timestamp = Math.floor(now.getTime() / 1000);
  const text = JSON.stringify({ type: msg.type, ...(msg.sequence !== undefined ? { sequence: msg.sequence } : {}), timestamp: now.toISOString(), data });
  const headers = {
    'webhook-id': msg.id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': signWebhook(secret, msg.id, timestamp, text),
    'user-agent': 'ca2vdm-webhooks/1',
  };
  let status: number;
  try {
    ({ status } = await (deps.post ?? postWebhook)(target, headers, text, {
      timeoutMs: deps.timeoutMs ?? DELIVERY_TIMEOUT_MS,
      policy: deps.policy,
    }));
  } catch (err) {
    // The guarded lookup refuses a host that now resolves to a forbidden address (DNS rebinding).
    if (err instanceof UnsafeWebhookUrlError) return fail(deps, msg, err.message, now);
    return retry(deps, msg, errorText(err), now);
  }
  if (status >= 200 && status < 300) return { kind: 'delivered', status };
  if (status === 410) return fail(deps, msg, 'receiver answered 410 Gone', now, status);
  return retry(deps, msg, `receiver answered ${status}`, now, status);
}

/** Re-queues the next try after the schedule's wait (+0-20 % jitter), or gives up after the last one. */
async function retry(deps: DeliveryDeps, msg: WebhookMessage, reason: string, now: Date, status?: number): Promise<DeliveryOutcome> {
  const schedule = deps.retryScheduleSec ?? DEFAULT_RETRY_SCHEDULE_SEC;
  if (msg.attempt > schedule.length) return fail(deps, msg, `${reason} after ${msg.attempt} tries`, now, status);
  const base = schedule[msg.attempt - 1];
  const delaySec = base * (1 + 0.2 * (deps.random ?? Math.random)());
  const next: WebhookMessage = {
    ...msg,
    attempt: msg.attempt + 1,
    not_before: new Date(now.getTime() + delaySec * 1000).toISOString(),
    last_error: reason.slice(0, 500),
  };
  await requeue(deps, next, delaySec, `${msg.id}:${next.attempt}`);
  return { kind: 'retrying', attempt: next.attempt, delaySec, reason };
}

async function requeue(deps: DeliveryDeps, msg: WebhookMessage, waitSec: number, dedupId: string): Promise<void> {
  // SQS takes whole seconds up to 15 min; the local queue takes fractions (tests use short schedules).
  const delay = Math.min(Math.max(waitSec, 0), MAX_QUEUE_DELAY_SEC);
  const delaySec = delay >= 1 ? Math.ceil(delay) : delay;
  await deps.webhookQueue.send(JSON.stringify(msg), { groupId: msg.id, dedupId, delaySec });
}

async function fail(
  deps: DeliveryDeps,
  msg: WebhookMessage,
  reason: string,
  now: Date,
  lastStatus?: number,
): Promise<DeliveryOutcome> {
  if (deps.deadLetterQueue) {
    await deps.deadLetterQueue.send(JSON.stringify({ ...msg, last_error: reason.slice(0, 500) }), {
      groupId: msg.id,
      dedupId: `${msg.id}:dead`,
    });
  }
  await recordWebhookFailure(deps.store, msg, reason, now, lastStatus);
  return { kind: 'failed', reason };
}

/** Notes an undelivered event next to the job (`webhooks/{event}.json`); GET shows it as `webhook_failures`. */
export async function recordWebhookFailure(
  store: ObjectStore,
  msg: Pick<WebhookMessage, 'id' | 'type' | 'chunk' | 'attempt' | 'tenant' | 'job_id'>,
  reason: string,
  now = new Date(),
  lastStatus?: number,
): Promise<void> {
  const record: WebhookFailure = {
    event_id: msg.id,
    type: msg.type,
    ...(msg.chunk !== undefined ? { chunk: msg.chunk } : {}),
    attempts: msg.attempt,
    reason: reason.slice(0, 500),
    ...(lastStatus !== undefined ? { last_status: lastStatus } : {}),
    failed_at: now.toISOString(),
  };
  await store.put(webhookFailureKey(msg.tenant, msg.job_id, msg.id), JSON.stringify(record), {
    contentType: 'application/json',
  });
  countWebhookFailure();
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    if (err.name === 'TimeoutError' || err.name === 'AbortError') return 'timed out';
    return code ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
