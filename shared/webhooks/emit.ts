import { type Job } from '../schemas/job.js';
import type { WebhookEventType } from '../schemas/webhook-event.js';
import type { TaskQueue } from '../queue/task-queue.js';
import { webhookEventId, type WebhookMessage } from './message.js';

/**
 * Queues a webhook event for the job if it has a webhook and the type passes its filter. The event
 * id is derived from (job, type, chunk), so calling this twice for one step delivers once.
 * `start` and `output` are best effort (may be dropped under pressure, logged); `completed` throws.
 * The worker sends `start` when it begins chunk 0 and `output` per chunk; the API sends none.
 */
export async function emitJobEvent(
  webhookQueue: TaskQueue,
  job: Job,
  type: 'start' | 'output' | 'completed',
  opts: { chunk?: number } = {},
): Promise<void> {
  const { webhook, webhook_events_filter: filter } = job.request;
  if (!webhook || !filter.includes(type)) return;
  const id = webhookEventId(job, type, opts.chunk);
  const message: WebhookMessage = {
    id,
    type,
    job_id: job.id,
    tenant: job.tenant,
    created_at: new Date().toISOString(),
    sequence: webhookSequence(job, type, opts.chunk),
    ...(opts.chunk !== undefined ? { chunk: opts.chunk } : {}),
    payload: { job },
    attempt: 1,
  };
  try {
    await webhookQueue.send(JSON.stringify(message), { groupId: job.id, dedupId: id });
  } catch (err) {
    if (type === 'completed') throw err;
    console.warn(JSON.stringify({ msg: 'webhook event dropped', type, job: job.id, error: String(err) }));
  }
}

/** Per-job order of an event (see WebhookEventSchema.sequence): the same for every retry of it. */
export function webhookSequence(job: Pick<Job, 'progress'>, type: WebhookEventType, chunk?: number): number {
  if (type === 'start') return 0;
  if (type === 'output') return (chunk ?? 0) + 1;
  return job.progress.chunks_total + 1;
}

export type { WebhookEventType };
