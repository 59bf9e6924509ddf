import { afterEach, beforeEach, expect, test } from 'vitest';
import type { Job } from '../../shared/schemas/job.js';
import { processWebhookMessage, type DeliveryDeps } from '../../shared/webhooks/deliver.js';
import { webhookEventId, type WebhookMessage } from '../../shared/webhooks/message.js';
import { tempStack, type TempStack } from '../api/helpers.js';

let stack: TempStack;
beforeEach(async () => { stack = await tempStack(); });
afterEach(() => stack.cleanup());

const DAY_SEC = 24 * 3600;

function job(): Job {
  const now = '2030-01-01T00:00:00.000Z';
  return {
    id: 'vid_retry', tenant: 'local', status: 'succeeded',
    request: {
      frames: 8, seed: 1, guidance: 2, steps: 2, init_frames: { count: 0, keys: [] },
      webhook: 'https://hooks.example.com/x', webhook_events_filter: ['completed'],
    },
    model: { name: 'm', sha256: 'a'.repeat(64) },
    progress: { chunks_done: 2, chunks_total: 2, frames_done: 8, frames_total: 8 },
    created_at: now, updated_at: now, metrics: { chunk_seconds: [] }, outputs: {}, cancel_requested: false,
  };
}

// No retryScheduleSec is passed anywhere below: this is the schedule a deployment gets.
test('the default retry schedule keeps a failing receiver in retries for at least 24 hours before giving up', async () => {
  const j = job();
  let now = new Date('2030-01-01T00:00:00Z');
  const start = now.getTime();
  const queued: string[] = [];
  const tries: number[] = [];
  const deps: DeliveryDeps = {
    store: stack.store,
    // Captures each re-sent message instead of queueing it, so the test walks the schedule by hand.
    webhookQueue: { ...stack.webhookQueue, send: async (body: string) => { queued.push(body); return { id: String(queued.length) }; } } as never,
    policy: { requireHttps: true, allowLoopback: false },
    now: () => now,
    random: () => 0, // no jitter: the bare schedule
    resolve: async () => [{ address: '93.184.216.34', family: 4 }],
    post: async () => { tries.push(now.getTime()); return { status: 503 }; },
  };
  const first: WebhookMessage = {
    id: webhookEventId(j, 'completed'), type: 'completed', job_id: j.id, tenant: j.tenant,
    created_at: now.toISOString(), payload: { job: j }, attempt: 1,
  };
  let body = JSON.stringify(first);
  for (let step = 0; step < 1000; step++) {
    const outcome = await processWebhookMessage(deps, body);
    if (outcome.kind === 'failed') break;
    if (outcome.kind !== 'waiting') expect(outcome.kind).toBe('retrying');
    body = queued.at(-1)!;
    const due = Date.parse(JSON.parse(body).not_before);
    // Deliveries happen only once due: jump the clock to the later of the queue delay and not_before.
    now = new Date(Math.max(due, now.getTime() + 1000));
  }
  // Given up for good: noted on the job.
  expect(await stack.store.list('jobs/local/vid_retry/webhooks/')).toHaveLength(1);
  expect(tries[0]).toBe(start);
  // The last try happens at least a day after the first one.
  expect((tries.at(-1)! - tries[0]) / 1000).toBeGreaterThanOrEqual(DAY_SEC);
});
