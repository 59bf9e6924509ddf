import { cancelVideo } from '../shared/api/videos.js';
import type { ApiDeps } from '../shared/api/types.js';
import { apiHandler } from './lib/api-handler.js';
import { aws } from './lib/deps.js';
import { json } from './lib/http.js';

/** `POST /v1/videos/{id}/cancel`: 202 when a cancel was requested, 200 when the job had already finished. */
export function makeCancelVideoHandler(getDeps: () => ApiDeps) {
  return apiHandler(getDeps, async (deps, call, event) => {
    const result = await cancelVideo(deps, call, event.pathParameters?.id ?? '');
    return json(result.cancel_requested ? 202 : 200, { ...result.job, detail: result.detail });
  });
}

export const handler = makeCancelVideoHandler(aws.api);
