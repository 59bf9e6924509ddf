import { z } from 'zod';
import { framesPrefix, jobPrefix } from '../keys.js';
import type { Job } from '../schemas/job.js';
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

/** The job as `GET /v1/videos/{id}` returns it (and webhooks deliver it). */
export interface PublicJob {
  id: string;
  status: Job['status'];
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  updated_at: string;
  input: {
    frames: number;
    seed: number;
    label: string | number | null;
    guidance: number;
    steps: number;
    init_frames: number;
    webhook: string | null;
    webhook_events_filter: string[];
  };
  model: Job['model'];
  progress: Job['progress'];
  metrics: Job['metrics'];
  output: {
    video: string | null;
    gif: string | null;
    /** Each finished chunk's frames, viewable while the job runs. */
    frames: { chunk: number; index: number | null; url: string }[];
  };
  /** When the links in `output` stop working (presigned URLs); null when served by the API itself. */
  urls_expire_at: string | null;
  error: Job['error'] | null;
  cancel_requested: boolean;
  /** Stored objects found damaged and rebuilt; `lossy: true` means the rest of the video may differ slightly. */
  repairs?: NonNullable<Job['repairs']>;
  urls: { get: string; cancel: string };
  webhook_failures?: WebhookFailure[];
}

/** Short view for listings: no output links (one job's GET has them). */
export type PublicJobSummary = Omit<PublicJob, 'output' | 'urls_expire_at' | 'webhook_failures'>;

export function jobUrls(baseUrl: string, id: string): PublicJob['urls'] {
  return { get: `${baseUrl}/v1/videos/${id}`, cancel: `${baseUrl}/v1/videos/${id}/cancel` };
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
    ...(job.repairs?.length ? { repairs: job.repairs } : {}),
    urls: jobUrls(baseUrl, job.id),
  };
}

/** The full public view: output links (presigned or API-served), finished chunks' frames, webhook failures. */
export async function renderJob(job: Job, ctx: RenderContext): Promise<PublicJob> {
  const { store, baseUrl, presignExpirySec } = ctx;
  const prefix = jobPrefix(job.tenant, job.id);
  const link = (key: string) =>
    store.presignGet
      ? store.presignGet(key, presignExpirySec)
      : Promise.resolve(`${baseUrl}/v1/videos/${job.id}/files/${key.slice(prefix.length)}`);

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
      frames,
    },
    urls_expire_at: store.presignGet ? new Date(now.getTime() + presignExpirySec * 1000).toISOString() : null,
    ...(failures.length > 0 ? { webhook_failures: failures } : {}),
  };
}
