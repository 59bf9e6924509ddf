import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { inputFrameKey, isSafeId, jobPrefix, streamPrefix, streamSegmentKey } from '../keys.js';
import { renderPlaylist, TS_SEGMENT_TYPE } from '../media/hls.js';
import { VIDEO_FPS } from '../media/mp4.js';
import { createJob, readJob, updateJob } from '../jobs/job-store.js';
import { newJob, startJob } from '../jobs/lifecycle.js';
import { FrameSizeError, PngDecodeError } from '../media/errors.js';
import { pngToFrame } from '../media/png.js';
import { resolveLabel } from '../model/labels.js';
import { isTerminal, type Job, type JobParent } from '../schemas/job.js';
import { UPLOAD_ID_PATTERN } from '../schemas/ids.js';
import { WEBHOOK_EVENT_TYPES } from '../schemas/webhook-event.js';
import { PreconditionFailedError } from '../store/errors.js';
import { UnsafeWebhookUrlError, WebhookHostUnresolvedError } from '../webhooks/errors.js';
import { getOrCreateWebhookSecret } from '../webhooks/secrets.js';
import { assertSafeWebhookUrl, systemResolver } from '../webhooks/ssrf.js';
import { ContinuationConflictError, IdempotencyConflictError, NotFoundError, ValidationError } from './errors.js';
import { jobIndexPrefix, parseJobIndexKey } from './keys.js';
import { outputLink, renderJob, summarizeJob, type ListVideosResponseSchema, type PublicJob, type PublicJobSummary } from './render.js';
import { checkRequestForModel, createVideoBodySchema, extendVideoBodySchema, parseBody, type CreateVideoBody } from './request.js';
import { readUpload } from './uploads.js';
import type { ApiDeps, CallContext } from './types.js';

export interface CreateVideoInput {
  body: unknown;
  /** The `Idempotency-Key` header; a body `id` takes its place when given (a different one is refused). */
  idempotencyKey?: string;
}

export interface CreateVideoResult {
  job: PublicJobSummary;
  /** False when an earlier request with the same idempotency key and body made this job. */
  created: boolean;
}

const IdempotencyRecordSchema = z.object({ key: z.string(), fingerprint: z.string() });

/**
 * Validates the request, stores the starting frames and job.json (status `starting`), and queues
 * chunk 0. With an idempotency key the job id is derived from it, so a repeat finds the same job:
 * same body -> that job, different body -> 409. Every step is safe to redo, so a repeat after a
 * crash half-way finishes the job's creation.
 */
export async function createVideo(deps: ApiDeps, ctx: CallContext, input: CreateVideoInput): Promise<CreateVideoResult> {
  const body = parseBody(createVideoBodySchema(deps.manifest, deps.config), input.body);
  const from = body.from ? { video: body.from.video, frame: body.from.frame, field: 'from.video' } : undefined;
  return acceptJob(deps, ctx, body, input.idempotencyKey, from);
}

/**
 * `POST /v1/videos/{id}/extend`: a new job that continues a finished video from its last frame,
 * conditioned on the video's stored cache (nothing already made is recomputed). With the parent's
 * seed (the default) and a parent that ends on a chunk boundary, the new frames are the frames a
 * longer job would have made.
 */
export async function extendVideo(deps: ApiDeps, ctx: CallContext, id: string, input: CreateVideoInput): Promise<CreateVideoResult> {
  const body = parseBody(extendVideoBodySchema(deps.manifest, deps.config), input.body);
  return acceptJob(deps, ctx, body, input.idempotencyKey, { video: id, field: 'id' });
}

/** What a continuation names: the video, how many of its frames (all when absent), and the field to blame. */
interface ContinuationRequest {
  video: string;
  frame?: number;
  field: string;
}

async function acceptJob(
  deps: ApiDeps,
  ctx: CallContext,
  body: CreateVideoBody,
  idempotencyKey: string | undefined,
  from: ContinuationRequest | undefined,
): Promise<CreateVideoResult> {
  const { manifest, store } = deps;
  const input = { idempotencyKey };
  if (body.id !== undefined && input.idempotencyKey !== undefined && body.id !== input.idempotencyKey) {
    throw new ValidationError('id and the Idempotency-Key header differ; send one, or the same value in both', 'id');
  }
  const key = body.id ?? input.idempotencyKey;
  if (key !== undefined && (key.length === 0 || key.length > 256)) {
    throw new ValidationError('Idempotency-Key must be 1-256 characters', 'Idempotency-Key');
  }
  checkRequestForModel(manifest, { initFrames: body.init_frames?.length ?? 0, continues: from !== undefined });
  const parent = from ? await continuation(deps, ctx, body, from) : undefined;
  const pngs = await decodeInitFrames(deps, ctx, body);
  if (body.webhook !== undefined) await checkWebhook(deps, body.webhook);

  const id = body.id ?? (key !== undefined ? derivedJobId(ctx.tenant, key) : randomJobId());
  if (key !== undefined) {
    // A client `id` already taken by a job made without that key: refuse before writing anything,
    // so that a refused request leaves no idempotency record behind to be replayed later.
    const taken = await readJob(store, ctx.tenant, id);
    if (taken && taken.job.idempotency_key !== key) {
      throw new IdempotencyConflictError(`a job with id ${id} already exists`, 'id');
    }
    const replay = await claimIdempotencyKey(deps, ctx, id, key, fingerprint({ ...body, ...(from ? { continues: from.video } : {}) }));
    if (replay) return replay;
  }

  const keys = pngs.map((_, i) => inputFrameKey(ctx.tenant, id, i));
  await Promise.all(pngs.map((png, i) => store.put(keys[i], png, { contentType: 'image/png' })));
  const job = newJob({
    id,
    tenant: ctx.tenant,
    request: {
      frames: body.frames,
      seed: body.seed ?? parent?.job.request.seed ?? randomSeed(),
      // A continuation keeps its video's conditioning: the same label, guidance and steps.
      ...(parent
        ? { ...(parent.job.request.label !== undefined ? { label: parent.job.request.label } : {}), guidance: parent.job.request.guidance, steps: parent.job.request.steps }
        : {
            ...(body.label !== undefined ? { label: resolveLabel(manifest, body.label)! } : {}),
            guidance: body.guidance ?? manifest.guidance.default,
            steps: body.steps ?? manifest.default_steps,
          }),
      init_frames: { count: keys.length, keys },
      ...(body.webhook !== undefined ? { webhook: body.webhook } : {}),
      webhook_events_filter: body.webhook_events_filter ?? [...WEBHOOK_EVENT_TYPES],
    },
    manifest,
    chunkFrames: parent?.chunkFrames,
    parent: parent?.record,
    idempotencyKey: key,
    now: deps.now?.() ?? new Date(),
  });
  let stored: Job;
  let created = true;
  try {
    stored = (await createJob(store, job)).job;
  } catch (err) {
    if (!(err instanceof PreconditionFailedError)) throw err;
    // A client `id` without an idempotency record, or a racing twin request: the job already exists.
    const existing = await readJob(store, ctx.tenant, id);
    if (!existing) throw err;
    if (key === undefined || existing.job.idempotency_key !== key) {
      throw new IdempotencyConflictError(`a job with id ${id} already exists`, 'id');
    }
    stored = existing.job;
    created = false;
  }
  await startJob(deps, stored);
  return { job: summarizeJob(stored, ctx.baseUrl), created };
}

/**
 * The video a continuation stands on, checked: this tenant's, finished, made by the serving model,
 * and cut where its cache is stored (on a chunk boundary, or at its end). Nothing is written.
 */
async function continuation(
  deps: ApiDeps,
  ctx: CallContext,
  body: CreateVideoBody,
  from: ContinuationRequest,
): Promise<{ job: Job; record: JobParent; chunkFrames: number }> {
  for (const field of ['label', 'guidance', 'steps', 'init_frames'] as const) {
    if (body[field] !== undefined) {
      throw new ValidationError(`${field}: a continuation keeps its video's label, guidance and steps and starts from its frames; omit ${field}`, field);
    }
  }
  const parent = await loadJob(deps, ctx.tenant, from.video, from.field);
  if (parent.status !== 'succeeded') {
    throw new ContinuationConflictError(`video ${parent.id} is ${parent.status}; only a succeeded video can be continued`, from.field);
  }
  if (parent.model.sha256 !== deps.manifest.onnx_sha256) {
    throw new ContinuationConflictError(`video ${parent.id} was made by model ${parent.model.name} (${parent.model.sha256}); this service serves ${deps.manifest.name}`, from.field);
  }
  const chunkFrames = parent.model.chunk_frames ?? deps.manifest.chunk_frames;
  const total = parent.request.frames;
  const frames = from.frame ?? total;
  if (frames > total || (frames % chunkFrames !== 0 && frames !== total)) {
    throw new ValidationError(
      `from.frame: must be at most ${total} (the video's length) and a multiple of ${chunkFrames} (its chunk length, where its cache is stored) or ${total} itself`,
      'from.frame',
    );
  }
  const start = parent.parent?.start_frame ?? parent.request.init_frames.count;
  const offset = parent.parent?.chunk_offset ?? 0;
  return {
    job: parent,
    chunkFrames,
    record: { id: parent.id, frames, start_frame: start + frames, chunk_offset: offset + Math.ceil(frames / chunkFrames) },
  };
}

/**
 * Records (key, body fingerprint) before anything else is written. Returns the existing job when
 * the key was used before with the same body; throws 409 for a different body; returns null when
 * this request is the first (or the first one crashed before job.json was written).
 */
async function claimIdempotencyKey(
  deps: ApiDeps,
  ctx: CallContext,
  id: string,
  key: string,
  print: string,
): Promise<CreateVideoResult | null> {
  const recordKey = `${jobPrefix(ctx.tenant, id)}idempotency.json`;
  try {
    await deps.store.put(recordKey, JSON.stringify({ key, fingerprint: print }), {
      ifNoneMatch: '*',
      contentType: 'application/json',
    });
    return null;
  } catch (err) {
    if (!(err instanceof PreconditionFailedError)) throw err;
  }
  const obj = await deps.store.get(recordKey);
  const record = obj ? IdempotencyRecordSchema.parse(JSON.parse(obj.body.toString('utf8'))) : null;
  if (!record || record.key !== key || record.fingerprint !== print) {
    throw new IdempotencyConflictError(
      'this idempotency key was already used with a different request body',
      'Idempotency-Key',
    );
  }
  const existing = await readJob(deps.store, ctx.tenant, id);
  if (!existing) return null;
  // A replay returns only the job this key made (a record can outlive a request refused later).
  if (existing.job.idempotency_key !== key) {
    throw new IdempotencyConflictError(`a job with id ${id} already exists`, 'id');
  }
  if (existing.job.status === 'starting') await startJob(deps, existing.job);
  return { job: summarizeJob(existing.job, ctx.baseUrl), created: false };
}

/** The starting frames as PNG bytes: base64 in the body, or uploads of this tenant; each checked as a frame. */
async function decodeInitFrames(deps: ApiDeps, ctx: CallContext, body: CreateVideoBody): Promise<Buffer[]> {
  const { frame } = deps.manifest;
  return Promise.all((body.init_frames ?? []).map(async (entry, i) => {
    const field = `init_frames.${i}`;
    const png = UPLOAD_ID_PATTERN.test(entry) ? await readUpload(deps, ctx.tenant, entry, field) : Buffer.from(entry, 'base64');
    try {
      pngToFrame(png, frame);
    } catch (err) {
      if (err instanceof FrameSizeError) {
        throw new ValidationError(`${field}: ${err.message}`, field, { cause: err });
      }
      if (err instanceof PngDecodeError) {
        throw new ValidationError(`${field}: not a readable PNG`, field, { cause: err });
      }
      throw err;
    }
    return png;
  }));
}

async function checkWebhook(deps: ApiDeps, url: string): Promise<void> {
  const policy = { requireHttps: deps.config.requireHttpsWebhooks, allowLoopback: deps.config.allowLoopbackWebhooks };
  try {
    await assertSafeWebhookUrl(url, policy, deps.resolve ?? systemResolver);
  } catch (err) {
    if (err instanceof UnsafeWebhookUrlError || err instanceof WebhookHostUnresolvedError) {
      throw new ValidationError(`webhook: ${err.message}`, 'webhook', { cause: err });
    }
    throw err;
  }
}

/** Key-order-independent hash of the validated body, to tell "same request" from "different request". */
function fingerprint(body: CreateVideoBody): string {
  const canon = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(canon)
      : v && typeof v === 'object'
        ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, x]) => [k, canon(x)]))
        : v;
  return createHash('sha256').update(JSON.stringify(canon(body))).digest('hex');
}

function randomJobId(): string {
  return `vid_${randomBytes(12).toString('hex')}`;
}

function derivedJobId(tenant: string, key: string): string {
  return `vid_${createHash('sha256').update(`${tenant}\0${key}`).digest('hex').slice(0, 24)}`;
}

function randomSeed(): number {
  return randomBytes(4).readUInt32BE(0);
}

/** A job of this tenant, or 404 (also for another tenant's job and for malformed ids). */
async function loadJob(deps: ApiDeps, tenant: string, id: string, field = 'id'): Promise<Job> {
  if (!isSafeId(id)) throw new NotFoundError(`no video ${JSON.stringify(id.slice(0, 80))}`, field);
  const found = await readJob(deps.store, tenant, id);
  if (!found) throw new NotFoundError(`no video ${id}`, field);
  return found.job;
}

export async function getVideo(deps: ApiDeps, ctx: CallContext, id: string): Promise<PublicJob> {
  const job = await loadJob(deps, ctx.tenant, id);
  return renderJob(job, { store: deps.store, baseUrl: ctx.baseUrl, presignExpirySec: deps.config.presignExpirySec, now: deps.now });
}

export type ListVideosResult = z.infer<typeof ListVideosResponseSchema>;

/** The tenant's jobs, newest first, `limit` per page, paged by an opaque cursor. */
export async function listVideos(
  deps: ApiDeps,
  ctx: CallContext,
  query: { limit?: string; cursor?: string },
): Promise<ListVideosResult> {
  // Decimal digits only: Number() would also take `1e1`, `0x10` and ` 5`.
  const limit = query.limit === undefined ? 20 : /^\d{1,6}$/.test(query.limit) ? Number(query.limit) : NaN;
  if (!Number.isInteger(limit) || limit < 1 || limit > deps.config.maxPageSize) {
    throw new ValidationError(`limit must be an integer in [1, ${deps.config.maxPageSize}]`, 'limit');
  }
  let after = '';
  if (query.cursor !== undefined) {
    after = Buffer.from(query.cursor, 'base64url').toString('utf8');
    if (!/^\d{13}-[A-Za-z0-9_-]{1,64}$/.test(after)) throw new ValidationError('cursor is not valid', 'cursor');
  }
  const prefix = jobIndexPrefix(ctx.tenant);
  const names = (await deps.store.list(prefix)).map((k) => k.slice(prefix.length)).filter((n) => n > after);
  const page = names.slice(0, limit);
  const jobs = await Promise.all(
    page.map(async (name) => {
      const id = parseJobIndexKey(prefix + name);
      return id ? ((await readJob(deps.store, ctx.tenant, id))?.job ?? null) : null;
    }),
  );
  return {
    data: jobs.filter((j): j is Job => j !== null).map((j) => summarizeJob(j, ctx.baseUrl)),
    next_cursor: names.length > limit ? Buffer.from(page[page.length - 1]).toString('base64url') : null,
  };
}

export interface CancelVideoResult {
  job: PublicJobSummary;
  /** False when the job had already finished: cancel was a no-op. */
  cancel_requested: boolean;
  detail: string;
}

/** Asks the worker to stop at the next chunk boundary (or not to finalize); a finished job is left as it is. */
export async function cancelVideo(deps: ApiDeps, ctx: CallContext, id: string): Promise<CancelVideoResult> {
  await loadJob(deps, ctx.tenant, id);
  const now = (deps.now?.() ?? new Date()).toISOString();
  const updated = await updateJob(deps.store, ctx.tenant, id, (job) => {
    if (isTerminal(job.status) || job.cancel_requested) return null;
    return { ...job, cancel_requested: true, cancel_requested_at: now };
  });
  if (!updated) throw new NotFoundError(`no video ${id}`, 'id');
  const job = updated.job;
  const detail = isTerminal(job.status)
    ? `video already ${job.status}; nothing to cancel`
    : 'cancel requested; the video stops at the next chunk boundary and ends canceled (also when its last chunk is in flight: no outputs are attached)';
  return { job: summarizeJob(job, ctx.baseUrl), cancel_requested: !isTerminal(job.status) && job.cancel_requested, detail };
}

/**
 * The job's HLS playlist: one segment per recorded chunk, in order (links presigned or API-served,
 * like the other outputs), and `#EXT-X-ENDLIST` once the job has ended. A segment is written before
 * its chunk is recorded, so a listed segment always exists; a job made before segments existed,
 * or one whose segment went missing, lists the chunks before the first gap.
 */
export async function getVideoStream(deps: ApiDeps, ctx: CallContext, id: string): Promise<string> {
  const job = await loadJob(deps, ctx.tenant, id);
  const stored = new Set(await deps.store.list(streamPrefix(job.tenant, job.id)));
  const chunkFrames = job.model.chunk_frames ?? deps.manifest.chunk_frames;
  const link = outputLink(job, { store: deps.store, baseUrl: ctx.baseUrl, presignExpirySec: deps.config.presignExpirySec });
  const keys: string[] = [];
  for (let k = 0; k < job.progress.chunks_done; k++) {
    const key = streamSegmentKey(job.tenant, job.id, k);
    if (!stored.has(key)) break;
    keys.push(key);
  }
  const entries = await Promise.all(keys.map(async (key, k) => ({
    duration: Math.min(chunkFrames, job.progress.frames_total - k * chunkFrames) / VIDEO_FPS,
    uri: await link(key),
  })));
  return renderPlaylist(entries, { ended: isTerminal(job.status), targetDuration: chunkFrames / VIDEO_FPS });
}

/** The tenant's webhook signing secret (`whsec_...`), created on first use. */
export async function getWebhookSecret(deps: Pick<ApiDeps, 'store'>, ctx: Pick<CallContext, 'tenant'>): Promise<{ key: string }> {
  return { key: await getOrCreateWebhookSecret(deps.store, ctx.tenant) };
}

/** An output object of one of the tenant's jobs (embedded mode serves links itself; S3 presigns). */
export async function getVideoFile(
  deps: ApiDeps,
  ctx: CallContext,
  id: string,
  relPath: string,
): Promise<{ body: Buffer; contentType: string }> {
  await loadJob(deps, ctx.tenant, id);
  if (!/^(output\/(video\.mp4|full\.mp4|preview\.gif)|frames\/\d{6}(-\d{3})?\.[a-z0-9]{1,8}|stream\/\d{6}\.ts)$/.test(relPath)) {
    throw new NotFoundError(`no file ${JSON.stringify(relPath.slice(0, 80))}`, 'path');
  }
  const obj = await deps.store.get(jobPrefix(ctx.tenant, id) + relPath);
  if (!obj) throw new NotFoundError(`no file ${relPath} (yet)`, 'path');
  const ext = relPath.slice(relPath.lastIndexOf('.') + 1);
  const types: Record<string, string> = { mp4: 'video/mp4', gif: 'image/gif', png: 'image/png', json: 'application/json', ts: TS_SEGMENT_TYPE };
  return { body: obj.body, contentType: obj.contentType ?? types[ext] ?? 'application/octet-stream' };
}
