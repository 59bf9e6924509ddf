import { z } from 'zod';
import { JobIdSchema, TenantIdSchema, TimestampSchema } from './ids.js';
import { WEBHOOK_EVENT_TYPES, WebhookEventTypeSchema } from './webhook-event.js';

export const JOB_STATUSES = ['starting', 'processing', 'succeeded', 'failed', 'canceled'] as const;
export const JobStatusSchema = z.enum(JOB_STATUSES);
export type JobStatus = z.infer<typeof JobStatusSchema>;

/** Statuses a job never leaves. */
export const TERMINAL_STATUSES = ['succeeded', 'failed', 'canceled'] as const satisfies readonly JobStatus[];

export function isTerminal(status: JobStatus): boolean {
  return (TERMINAL_STATUSES as readonly JobStatus[]).includes(status);
}

const Count = z.int().nonnegative();

/** The request as stored: validated and with defaults filled in by the API, so the worker assumes nothing. */
/** A webhook URL as the job stores it (the create request checks the same, and SSRF rules besides). */
export const WebhookUrlSchema = z.url({ protocol: /^https?$/ }).max(2048);

export const JobRequestSchema = z.object({
  frames: z.int().positive(),
  /** Seeds the counter-based noise generator with (seed, chunk): same seed, same video. */
  seed: z.int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  /** Class index, or a label name the manifest lists; absent for unconditional models. */
  label: z.union([z.int().nonnegative(), z.string().min(1).max(64)]).optional(),
  guidance: z.number().nonnegative(),
  steps: z.int().positive(),
  /** Starting frames were uploaded to `input/NNN.png`; the keys are kept so the worker does not list. */
  init_frames: z
    .object({ count: Count, keys: z.array(z.string().min(1)) })
    .refine((v) => v.count === v.keys.length, { message: 'init_frames.count must equal keys.length' }),
  webhook: WebhookUrlSchema.optional(),
  webhook_events_filter: z.array(WebhookEventTypeSchema).default([...WEBHOOK_EVENT_TYPES]),
});
export type JobRequest = z.infer<typeof JobRequestSchema>;

export const JobModelSchema = z.object({
  name: z.string().min(1),
  /** SHA-256 of the ONNX file; cache segments carry it, so a model swap cannot reuse old K/V. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /** Frames per chunk the job is cut into; the same weights served in other chunks make another video. */
  chunk_frames: z.int().positive().optional(),
});

export const JobProgressSchema = z.object({
  chunks_done: Count,
  chunks_total: Count,
  frames_done: Count,
  frames_total: Count,
});
export type JobProgress = z.infer<typeof JobProgressSchema>;

export const JobErrorSchema = z.object({
  /** Stable machine-readable code (e.g. `max_receives`, `cache_corrupt`); the message is for people. */
  code: z.string().min(1),
  message: z.string(),
});

export const JobMetricsSchema = z.object({
  queue_wait_s: z.number().nonnegative().optional(),
  /** Wall time of each chunk step, in chunk order. */
  chunk_seconds: z.array(z.number().nonnegative()),
  total_s: z.number().nonnegative().optional(),
});

export const JobOutputsSchema = z.object({
  /** Object-store keys (not URLs: URLs are presigned when the job is read). */
  video: z.string().optional(),
  gif: z.string().optional(),
  /** A job with a parent: the whole video, the lineage's frames then this job's. */
  full: z.string().optional(),
});

/** A stored object the worker found damaged or missing and rebuilt, and from what. */
export const JobRepairSchema = z.object({
  /** Key below the job's folder, e.g. `cache/000003.kv` or `frames/000002-001.png`. */
  object: z.string().min(1).max(256),
  /**
   * `clean_copy`: the chunk's lossless fp16 output (exact); `input`: the starting frames (exact);
   * `latents`: a latent model's stored chunk latents (exact); `png`: 8-bit frames (approximate, the last resort).
   */
  from: z.enum(['clean_copy', 'input', 'latents', 'png']),
  /** True when the rebuild is approximate, so the rest of the video may differ from an undamaged run. */
  lossy: z.boolean(),
  at: TimestampSchema,
});
export type JobRepair = z.infer<typeof JobRepairSchema>;

/**
 * A job that continues another video (extend, or fork at frame `frames`): it conditions on the
 * parent's first `frames` frames through the parent's stored cache, and numbers its frames after
 * them. `start_frame` and `chunk_offset` place it in the whole lineage (frame index of its first
 * frame, counting the root's starting frames; chunk index its noise is keyed by).
 */
export const JobParentSchema = z.object({
  id: JobIdSchema,
  frames: z.int().positive(),
  start_frame: Count,
  chunk_offset: Count,
});
export type JobParent = z.infer<typeof JobParentSchema>;

/** The job record, `jobs/{tenant}/{job}/job.json`; updated only by compare-and-swap on its ETag. */
export const JobSchema = z.object({
  id: JobIdSchema,
  tenant: TenantIdSchema,
  status: JobStatusSchema,
  request: JobRequestSchema,
  model: JobModelSchema,
  progress: JobProgressSchema,
  created_at: TimestampSchema,
  updated_at: TimestampSchema,
  started_at: TimestampSchema.optional(),
  completed_at: TimestampSchema.optional(),
  error: JobErrorSchema.optional(),
  metrics: JobMetricsSchema,
  outputs: JobOutputsSchema,
  /** Set by the cancel endpoint; the worker checks it before each chunk and then sets status `canceled`. */
  cancel_requested: z.boolean().default(false),
  cancel_requested_at: TimestampSchema.optional(),
  parent: JobParentSchema.optional(),
  /** Client `id` or `Idempotency-Key`: a second create with it returns this job. */
  idempotency_key: z.string().min(1).max(256).optional(),
  /** Damaged or missing objects rebuilt while the job ran (at most 100 kept). */
  repairs: z.array(JobRepairSchema).max(100).optional(),
});
export type Job = z.infer<typeof JobSchema>;
