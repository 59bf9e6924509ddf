import { z } from 'zod';
import { JobIdSchema, TenantIdSchema, TimestampSchema } from './ids.js';

/** Event types a client can subscribe to with `webhook_events_filter` (Replicate's names). */
export const WEBHOOK_EVENT_TYPES = ['start', 'output', 'completed'] as const;
export const WebhookEventTypeSchema = z.enum(WEBHOOK_EVENT_TYPES);
export type WebhookEventType = z.infer<typeof WebhookEventTypeSchema>;

/**
 * One webhook delivery, as queued for the dispatcher. `id` becomes the `webhook-id` header and stays
 * the same across retries, so receivers can deduplicate.
 */
export const WebhookEventSchema = z.object({
  id: z.string().min(1).max(128),
  type: WebhookEventTypeSchema,
  job_id: JobIdSchema,
  tenant: TenantIdSchema,
  created_at: TimestampSchema,
  /**
   * Order of the event within its job: `start` 0, `output` of chunk k k+1, `completed` chunks_total+1.
   * A retried event can arrive after a later one; receivers order by this, not by arrival.
   */
  sequence: z.int().nonnegative().optional(),
  /** For `output`: the chunk that was just written. */
  chunk: z.int().nonnegative().optional(),
  /** The body sent to the client: usually the public view of the job at the time of the event. */
  payload: z.record(z.string(), z.unknown()),
});
export type WebhookEvent = z.infer<typeof WebhookEventSchema>;
