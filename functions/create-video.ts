import { createVideo } from '../shared/api/videos.js';
import type { ApiDeps } from '../shared/api/types.js';
import { apiHandler } from './lib/api-handler.js';
import { aws } from './lib/deps.js';
import { header, jobCreated, parseJsonBody } from './lib/http.js';

/** `POST /v1/videos`: 202 with the new job, or 200 with the earlier job for a repeated idempotency key. */
export function makeCreateVideoHandler(getDeps: () => ApiDeps) {
  return apiHandler(getDeps, async (deps, call, event) => {
    const body = parseJsonBody(event, deps.config.maxBodyBytes);
    return jobCreated(await createVideo(deps, call, { body, idempotencyKey: header(event, 'idempotency-key') }));
  });
}

export const handler = makeCreateVideoHandler(aws.api);
