import { z } from 'zod';
import { JobIdSchema, TenantIdSchema, TimestampSchema } from './ids.js';

/**
 * Body of a chunk-queue message: "compute chunk `chunk` of job `job`". Everything else (request,
 * progress, cancel flag) is read from job.json, so a stale or duplicated task is harmless.
 */
export const ChunkTaskSchema = z.object({
  job: JobIdSchema,
  tenant: TenantIdSchema,
  chunk: z.int().nonnegative(),
  enqueued_at: TimestampSchema.optional(),
});
export type ChunkTask = z.infer<typeof ChunkTaskSchema>;

/** Deduplication id of a chunk task, as the design fixes it: one task per (job, chunk). */
export function chunkTaskDedupId(task: Pick<ChunkTask, 'job' | 'chunk'>): string {
  return `${task.job}:${task.chunk}`;
}
