import { z } from 'zod';
import { isSafeId, InvalidIdError } from '../keys.js';
import { PreconditionFailedError } from '../store/errors.js';
import type { ObjectStore } from '../store/object-store.js';
import { generateWebhookSecret } from './signature.js';

const SecretRecordSchema = z.object({ secret: z.string().startsWith('whsec_'), created_at: z.iso.datetime() });

/** `tenants/{tenant}/webhook-secret.json`: the tenant's signing secret. */
export function webhookSecretKey(tenant: string): string {
  if (!isSafeId(tenant)) throw new InvalidIdError('tenant', tenant);
  return `tenants/${tenant}/webhook-secret.json`;
}

/** The tenant's signing secret, created on first use (create-once, so two racing callers agree). */
export async function getOrCreateWebhookSecret(store: ObjectStore, tenant: string, now = new Date()): Promise<string> {
  const key = webhookSecretKey(tenant);
  for (let attempt = 0; attempt < 3; attempt++) {
    const existing = await store.get(key);
    if (existing) return SecretRecordSchema.parse(JSON.parse(existing.body.toString('utf8'))).secret;
    const record = { secret: generateWebhookSecret(), created_at: now.toISOString() };
    try {
      await store.put(key, JSON.stringify(record), { ifNoneMatch: '*', contentType: 'application/json' });
      return record.secret;
    } catch (err) {
      if (!(err instanceof PreconditionFailedError)) throw err;
    }
  }
  throw new Error(`could not read or create the webhook secret of tenant ${tenant}`);
}
