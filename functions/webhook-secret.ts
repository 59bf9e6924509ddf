import { getWebhookSecret } from '../shared/api/videos.js';
import type { ApiDeps } from '../shared/api/types.js';
import { apiHandler } from './lib/api-handler.js';
import { aws } from './lib/deps.js';
import { json } from './lib/http.js';

/** `GET /v1/webhooks/default/secret`: `{key: "whsec_..."}`, the caller's signing secret. */
export function makeWebhookSecretHandler(getDeps: () => ApiDeps) {
  return apiHandler(getDeps, async (deps, call) => json(200, await getWebhookSecret(deps, call)));
}

export const handler = makeWebhookSecretHandler(aws.api);
