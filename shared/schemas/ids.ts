import { z } from 'zod';

/**
 * Tenant and job ids become path segments of storage keys and SQS group ids, so they are limited to
 * a charset that is safe in both (no '/', no '.', no leading '-'), 1 to 64 characters.
 */
export const SAFE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export const TenantIdSchema = z.string().regex(SAFE_ID_PATTERN, 'tenant id: 1-64 of [A-Za-z0-9_-], starting alphanumeric');
export const JobIdSchema = z.string().regex(SAFE_ID_PATTERN, 'job id: 1-64 of [A-Za-z0-9_-], starting alphanumeric');

export type TenantId = z.infer<typeof TenantIdSchema>;
export type JobId = z.infer<typeof JobIdSchema>;

/** ISO-8601 UTC timestamp, as produced by `new Date().toISOString()`. */
export const TimestampSchema = z.iso.datetime();

/** An upload of a starting frame (`POST /v1/uploads`): `upl_` and 24 hex digits. */
export const UPLOAD_ID_PATTERN = /^upl_[0-9a-f]{24}$/;
