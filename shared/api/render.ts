import { z } from 'zod';
import { framesPrefix, jobPrefix } from '../keys.js';
import { JobErrorSchema, JobMetricsSchema, JobModelSchema, JobProgressSchema, JobRepairSchema, JobStatusSchema, type Job } from '../schemas/job.js';
import type { ObjectStore } from '../store/object-store.js';
import { webhookFailuresPrefix } from './keys.js';

/** How output links are made: presigned by the store (S3), else served by the API itself (embedded). */
export interface RenderContext {
  store: ObjectStore;
  /** Base URL of the API, e.g. `http://127.0.0.1:8080` or `https://x.execute-api...../prod`. */
  baseUrl: string;
  presignExpirySec: number;
  now?: () => Date;
}

/** A record of a webhook event that exhausted its retries or was refused (`410 Gone`, unsafe URL). */
export const WebhookFailureSchema = z.object({
  event_id: z.string(),
  type: z.string(),
  chunk: z.int().optional(),
  attempts: z.int(),
  reason: z.string(),
  last_status: z.int().optional(),
  failed_at: z.string(),
});
export type WebhookFailure = z.infer<typeof WebhookFailureSchema>;

/** The job as `GET /v1/videos/{id}` returns it (and webhooks deliver it): the schema is the type and the OpenAPI document. */
export const PublicJobSchema = z.object({
  id: z.string(),
  status: JobStatusSchema,
  created_at: z.string(),
  started_at: z.string().nullable(),
  completed_at: z.string().nullable(),
  updated_at: z.string(),
  input: z.object({
    frames: z.int(),
    seed: z.int(),
    label: z.union([z.string(), z.int()]).nullable(),
    guidance: z.number(),
    steps: z.int(),
    init_frames: z.int(),
    webhook: z.string().nullable(),
    webhook_events_filter: z.array(z.string()),
  }),
  model: JobModelSchema,
  progress: JobProgressSchema,
  metrics: JobMetricsSchema,
  output: z.object({
    video: z.string().nullable(),
    gif: z.string().nullable(),
    /** A continuation (extend, fork): the whole video, the frames it continues and then its own. */
    full: z.string().nullable(),
    /** Each finished chunk's frames, viewable while the job runs. */
    frames: z.array(z.object({ chunk: z.int(), index: z.int().nullable(), url: z.string() })),
  }),
  /** When the links in `output` stop working (presigned URLs); null when served by the API itself. */
  urls_expire_at: z.string().nullable(),
  error: JobErrorSchema.nullable(),
  cancel_requested: z.boolean(),
  /** The video this job continues, and from how many of its frames; null for a new video. */
  parent: z.object({ id: z.string(), frames: z.int() }).nullable(),
  /** Stored objects found damaged and rebuilt; `lossy: true` means the rest of the video may differ slightly. */
  repairs: z.array(JobRepairSchema).optional(),
  /** `stream`: the HLS playlist, which grows by one segment per finished chunk while the job runs. */
  urls: z.object({ get: z.string(), cancel: z.string(), stream: z.string() }),
  webhook_failures: z.array(WebhookFailureSchema).optional(),
});
export type PublicJob = z.infer<typeof PublicJobSchema>;

/** Short view for listings and for create/cancel answers: no output links (one job's GET has them). */
export const PublicJobSummarySchema = PublicJobSchema.omit({ output: true, urls_expire_at: true, webhook_failures: true });
export type PublicJobSummary = z.infer<typeof PublicJobSummarySchema>;

/** `GET /v1/videos`: a page of the caller's jobs, newest first. */
export const ListVideosResponseSchema = z.object({
  data: z.array(PublicJobSummarySchema),
  /** Pass as `cursor` for the next (older) page; null on the last page. */
  next_cursor: z.string().nullable(),
});

/** `POST /v1/videos/{id}/cancel`: the job and what the cancel does to it. */
export const CancelVideoResponseSchema = PublicJobSummarySchema.extend({ detail: z.string() });

/** `GET /v1/webhooks/default/secret`. */
export const WebhookSecretResponseSchema = z.object({ key: z.string() });

export function jobUrls(baseUrl: string, id: string): PublicJob['urls'] {
  return {
    get: `${baseUrl}/v1/videos/${id}`,
    cancel: `${baseUrl}/v1/videos/${id}/cancel`,
    stream: `${baseUrl}/v1/videos/${id}/stream.m3u8`,
  };
}

export function summarizeJob(job: Job, baseUrl: string): PublicJobSummary {
  const r = job.request;
  return {
    id: job.id,
    status: job.status,
    created_at: job.created_at,
    started_at: job.started_at ?? null,
    completed_at: job.completed_at ?? null,
    updated_at: job.updated_at,
    input: {
      frames: r.frames,
      seed: r.seed,
      label: r.label ?? null,
      guidance: r.guidance,
      steps: r.steps,
      init_frames: r.init_frames.count,
      webhook: r.webhook ?? null,
      webhook_events_filter: r.webhook_events_filter,
    },
    model: job.model,
    progress: job.progress,
    metrics: job.metrics,
    error: job.error ?? null,
    cancel_requested: job.cancel_requested,
    parent: job.parent ? { id: job.parent.id, frames: job.parent.frames } : null,
    ...(job.repairs?.length ? { repairs: job.repairs } : {}),
    urls: jobUrls(baseUrl, job.id),
  };
}

/** A link to one of the job's objects: presigned by the store (S3), else served by the API's files route. */
export function outputLink(job: Job, ctx: RenderContext): (key: string) => Promise<string> {
  const prefix = jobPrefix(job.tenant, job.id);
  return (key) =>
    ctx.store.presignGet
      ? ctx.store.presignGet(key, ctx.presignExpirySec)
      : Promise.resolve(`${ctx.baseUrl}/v1/videos/${job.id}/files/${key.slice(prefix.length)}`);
}

/** The full public view: output links (presigned or API-served), finished chunks' frames, webhook failures. */
export async function renderJob(job: Job, ctx: RenderContext): Promise<PublicJob> {
  const { store, baseUrl, presignExpirySec } = ctx;
  const link = outputLink(job, ctx);

  const [frameKeys, failureKeys] = await Promise.all([
    store.list(framesPrefix(job.tenant, job.id)),
    store.list(webhookFailuresPrefix(job.tenant, job.id)),
  ]);
  const frames = await Promise.all(
    frameKeys.flatMap((key) => {
      const m = /\/frames\/(\d{6})(?:-(\d{3}))?\.[a-z0-9]+$/.exec(key);
      if (!m) return [];
      return [link(key).then((url) => ({ chunk: Number(m[1]), index: m[2] === undefined ? null : Number(m[2]), url }))];
    }),
  );
  const failures = (
    await Promise.all(
      failureKeys.map(async (key) => {
        const obj = await store.get(key);
        const parsed = obj ? WebhookFailureSchema.safeParse(JSON.parse(obj.body.toString('utf8'))) : null;
        return parsed?.success ? [parsed.data] : [];
      }),
    )
  ).flat();
  const now = ctx.now?.() ?? new Date();
  return {
    ...summarizeJob(job, baseUrl),
    output: {
      video: job.outputs.video ? await link(job.outputs.video) : null,
      gif: job.outputs.gif ? await link(job.outputs.gif) : null,
      full: job.outputs.full ? await link(job.outputs.full) : null,
      frames,
    },
    urls_expire_at: store.presignGet ? new Date(now.getTime() + presignExpirySec * 1000).toISOString() : null,
    ...(failures.length > 0 ? { webhook_failures: failures } : {}),
  };
}
