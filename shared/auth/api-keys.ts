import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { isSafeId, InvalidIdError } from '../keys.js';
import { PreconditionFailedError } from '../store/errors.js';
import type { ObjectStore } from '../store/object-store.js';

/** API keys look like `c2v_` + 32 base64url characters; only their SHA-256 is stored. */
export const API_KEY_PREFIX = 'c2v_';

const KeyRecordSchema = z.object({ tenant: z.string(), created_at: z.iso.datetime() });
const LocalKeySchema = z.object({ key: z.string(), tenant: z.string(), created_at: z.iso.datetime() });

export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** `auth/keys/{sha256(key)}.json` -> `{tenant, created_at}`. */
export function apiKeyRecordKey(key: string): string {
  return `auth/keys/${hashApiKey(key)}.json`;
}

/** The embedded mode keeps its one key in clear so a restart can print it again (never in AWS). */
export const LOCAL_API_KEY_KEY = 'auth/local-key.json';

export function generateApiKey(): string {
  return API_KEY_PREFIX + randomBytes(24).toString('base64url');
}

/** Creates a key for `tenant` and returns it; it is shown once, only its hash is kept. */
export async function createApiKey(store: ObjectStore, tenant: string, now = new Date()): Promise<string> {
  if (!isSafeId(tenant)) throw new InvalidIdError('tenant', tenant);
  const key = generateApiKey();
  await store.put(apiKeyRecordKey(key), JSON.stringify({ tenant, created_at: now.toISOString() }), {
    ifNoneMatch: '*',
    contentType: 'application/json',
  });
  return key;
}

/** The tenant of an API key, or null if the key is unknown or malformed. */
export async function resolveApiKey(store: ObjectStore, key: string): Promise<string | null> {
  if (!key.startsWith(API_KEY_PREFIX) || key.length > 128) return null;
  const obj = await store.get(apiKeyRecordKey(key));
  if (!obj) return null;
  const parsed = KeyRecordSchema.safeParse(JSON.parse(obj.body.toString('utf8')));
  return parsed.success && isSafeId(parsed.data.tenant) ? parsed.data.tenant : null;
}

/** Embedded mode: the key of tenant `local`, created at first start (`created: true`) and reused after. */
export async function ensureLocalApiKey(
  store: ObjectStore,
  tenant = 'local',
): Promise<{ key: string; tenant: string; created: boolean }> {
  const existing = await store.get(LOCAL_API_KEY_KEY);
  if (existing) {
    const rec = LocalKeySchema.parse(JSON.parse(existing.body.toString('utf8')));
    // Re-register the hash in case the store lost it; same content, so this is idempotent.
    await store.put(apiKeyRecordKey(rec.key), JSON.stringify({ tenant: rec.tenant, created_at: rec.created_at }));
    return { key: rec.key, tenant: rec.tenant, created: false };
  }
  const key = generateApiKey();
  const created_at = new Date().toISOString();
  try {
    await store.put(LOCAL_API_KEY_KEY, JSON.stringify({ key, tenant, created_at }), { ifNoneMatch: '*' });
  } catch (err) {
    if (err instanceof PreconditionFailedError) return ensureLocalApiKey(store, tenant); // another process won
    throw err;
  }
  await store.put(apiKeyRecordKey(key), JSON.stringify({ tenant, created_at }), { contentType: 'application/json' });
  return { key, tenant, created: true };
}
