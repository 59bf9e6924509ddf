import { createHash } from 'node:crypto';
import { z } from 'zod';
import { TimestampSchema } from '../schemas/ids.js';
import { JobSchema, type Job } from '../schemas/job.js';
import { WebhookEventSchema, type WebhookEventType } from '../schemas/webhook-event.js';

/**
 * A webhook-queue message: the event plus its delivery state. A retry is a new message with
 * `attempt + 1` and `not_before` (SQS delays cap at 15 minutes, so a longer wait is re-sent in steps).
 */
export const WebhookMessageSchema = WebhookEventSchema.extend({
  /** 1 for the first try. */
  attempt: z.int().positive().default(1),
  /** Do not deliver before this time. */
  not_before: TimestampSchema.optional(),
  last_error: z.string().max(500).optional(),
});
export type WebhookMessage = z.infer<typeof WebhookMessageSchema>;

/** The stored job, as carried in `payload.job`; delivery renders it the way GET does. */
export const WebhookPayloadSchema = z.object({ job: JobSchema });

/**
 * Stable event id: the same (job, type, chunk) always gets the same id, so a retried worker step is
 * deduplicated by the queue and by the receiver (it is the `webhook-id` header).
 */
export function webhookEventId(job: Pick<Job, 'id' | 'tenant'>, type: WebhookEventType, chunk?: number): string {
  const digest = createHash('sha256').update(`${job.tenant}/${job.id}:${type}:${chunk ?? ''}`).digest('hex');
  return `msg_${digest.slice(0, 32)}`;
}
