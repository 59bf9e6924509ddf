import { InvalidIdError, isSafeId, jobPrefix } from '../keys.js';

/**
 * Keys the API adds to the storage layout of docs/design.md:
 * - `index/{tenant}/{inverted ms}-{job}`: one empty object per job, so listing a tenant's jobs newest
 *   first reads one key per job instead of every chunk file below `jobs/{tenant}/`.
 * - `jobs/{tenant}/{job}/webhooks/{event}.json`: a webhook event that could not be delivered.
 */
const MAX_MS = 9_999_999_999_999;

export function jobIndexPrefix(tenant: string): string {
  if (!isSafeId(tenant)) throw new InvalidIdError('tenant', tenant);
  return `index/${tenant}/`;
}

export function jobIndexKey(tenant: string, job: string, createdAt: string): string {
  if (!isSafeId(job)) throw new InvalidIdError('job', job);
  const inverted = String(MAX_MS - Date.parse(createdAt)).padStart(13, '0');
  return `${jobIndexPrefix(tenant)}${inverted}-${job}`;
}

/** Job id of an index key, or null. */
export function parseJobIndexKey(key: string): string | null {
  const m = /\/\d{13}-([^/]+)$/.exec(key);
  return m && isSafeId(m[1]) ? m[1] : null;
}

export function webhookFailuresPrefix(tenant: string, job: string): string {
  return `${jobPrefix(tenant, job)}webhooks/`;
}

export function webhookFailureKey(tenant: string, job: string, eventId: string): string {
  if (!isSafeId(eventId)) throw new InvalidIdError('job', eventId);
  return `${webhookFailuresPrefix(tenant, job)}${eventId}.json`;
}

/** `uploads/{tenant}/{upload}.png` and its record `.json`: a starting frame sent before the job (expires after a day). */
export function uploadKey(tenant: string, upload: string, ext: 'png' | 'json'): string {
  if (!isSafeId(tenant)) throw new InvalidIdError('tenant', tenant);
  if (!isSafeId(upload)) throw new InvalidIdError('job', upload);
  return `uploads/${tenant}/${upload}.${ext}`;
}
