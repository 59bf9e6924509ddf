/**
 * Uploads for starting frames: `POST /v1/uploads` declares one PNG (its size) and returns where to
 * PUT it: a presigned S3 URL for exactly that many bytes on AWS, the API's own
 * `PUT /v1/uploads/{id}` in the embedded mode. A job's `init_frames` may then name upload ids
 * instead of carrying base64; the same PNG checks apply when the job is created. Uploads belong to
 * the tenant that declared them and expire after a day (a lifecycle rule on AWS; the record's
 * `expires_at` here).
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { UPLOAD_ID_PATTERN } from '../schemas/ids.js';
import { PreconditionFailedError } from '../store/errors.js';
import { IdempotencyConflictError, NotFoundError, PayloadTooLargeError, ValidationError } from './errors.js';
import { uploadKey } from './keys.js';
import { parseBody } from './request.js';
import type { ApiDeps, CallContext } from './types.js';

export const UPLOAD_LIFETIME_SEC = 24 * 3600;

export function createUploadBodySchema(maxBytes: number) {
  return z.strictObject({
    /** Size of the PNG to be uploaded, in bytes: the upload must be exactly this long. */
    bytes: z.int().min(1).max(maxBytes),
    content_type: z.literal('image/png').optional(),
  });
}

/** `POST /v1/uploads` answers this. */
export const UploadSchema = z.object({
  id: z.string(),
  /** PUT the PNG here, with `content-type: image/png` (and, on the embedded API, your key). */
  upload_url: z.string(),
  method: z.literal('PUT'),
  bytes: z.int(),
  expires_at: z.string(),
});
export type Upload = z.infer<typeof UploadSchema>;

/** `PUT /v1/uploads/{id}` answers this. */
export const UploadReceiptSchema = z.object({ id: z.string(), bytes: z.int() });

const UploadRecordSchema = z.object({ bytes: z.int(), expires_at: z.string() });

export async function createUpload(deps: ApiDeps, ctx: CallContext, input: unknown): Promise<Upload> {
  const body = parseBody(createUploadBodySchema(deps.config.maxUploadBytes), input);
  const id = `upl_${randomBytes(12).toString('hex')}`;
  const now = deps.now?.() ?? new Date();
  const expires = new Date(now.getTime() + UPLOAD_LIFETIME_SEC * 1000).toISOString();
  await deps.store.put(uploadKey(ctx.tenant, id, 'json'), JSON.stringify({ bytes: body.bytes, expires_at: expires }), {
    ifNoneMatch: '*',
    contentType: 'application/json',
  });
  const key = uploadKey(ctx.tenant, id, 'png');
  const uploadUrl = deps.store.presignPut
    ? await deps.store.presignPut(key, {
        expiresSec: Math.min(deps.config.presignExpirySec, UPLOAD_LIFETIME_SEC),
        contentLength: body.bytes,
        contentType: 'image/png',
      })
    : `${ctx.baseUrl}/v1/uploads/${id}`;
  return { id, upload_url: uploadUrl, method: 'PUT', bytes: body.bytes, expires_at: expires };
}

/** `PUT /v1/uploads/{id}` (embedded mode): the declared upload's bytes, once, of the declared size at most. */
export async function putUpload(deps: ApiDeps, ctx: CallContext, id: string, bytes: Buffer): Promise<z.infer<typeof UploadReceiptSchema>> {
  const record = await readRecord(deps, ctx.tenant, id, 'id');
  if (!record) throw new NotFoundError(`no upload ${JSON.stringify(id.slice(0, 80))}`, 'id');
  if (bytes.length > record.bytes) throw new PayloadTooLargeError(`upload is ${bytes.length} bytes; ${record.bytes} were declared`, 'body');
  if (bytes.length === 0) throw new ValidationError('upload is empty', 'body');
  try {
    await deps.store.put(uploadKey(ctx.tenant, id, 'png'), bytes, { ifNoneMatch: '*', contentType: 'image/png' });
  } catch (err) {
    if (err instanceof PreconditionFailedError) throw new IdempotencyConflictError(`upload ${id} was already uploaded`, 'id');
    throw err;
  }
  return { id, bytes: bytes.length };
}

/**
 * The bytes of upload `id` of this tenant, for `init_frames.{index}`; an id that was never declared,
 * never uploaded, expired, or belongs to another tenant is a 400 naming the field.
 */
export async function readUpload(deps: ApiDeps, tenant: string, id: string, field: string): Promise<Buffer> {
  const record = await readRecord(deps, tenant, id, field);
  const obj = record ? await deps.store.get(uploadKey(tenant, id, 'png')) : null;
  if (!record || !obj) throw new ValidationError(`${field}: upload ${id} was never uploaded (or is not yours)`, field);
  return obj.body;
}

async function readRecord(deps: ApiDeps, tenant: string, id: string, field: string): Promise<z.infer<typeof UploadRecordSchema> | null> {
  if (!UPLOAD_ID_PATTERN.test(id)) return null;
  const obj = await deps.store.get(uploadKey(tenant, id, 'json'));
  if (!obj) return null;
  const record = UploadRecordSchema.parse(JSON.parse(obj.body.toString('utf8')));
  if (Date.parse(record.expires_at) <= (deps.now?.() ?? new Date()).getTime()) {
    throw new ValidationError(`${field}: upload ${id} expired at ${record.expires_at}`, field);
  }
  return record;
}
