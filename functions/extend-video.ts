import { extendVideo } from '../shared/api/videos.js';
import type { ApiDeps } from '../shared/api/types.js';
import { apiHandler } from './lib/api-handler.js';
import { aws } from './lib/deps.js';
import { header, jobCreated, parseJsonBody } from './lib/http.js';

/** `POST /v1/videos/{id}/extend`: 202 with a new job continuing the video, or 200 for a repeated idempotency key. */
export function makeExtendVideoHandler(getDeps: () => ApiDeps) {
  return apiHandler(getDeps, async (deps, call, event) => {
    const body = parseJsonBody(event, deps.config.maxBodyBytes);
    const input = { body, idempotencyKey: header(event, 'idempotency-key') };
    return jobCreated(await extendVideo(deps, call, event.pathParameters?.id ?? '', input));
  });
}

export const handler = makeExtendVideoHandler(aws.api);
