import { getVideo } from '../shared/api/videos.js';
import type { ApiDeps } from '../shared/api/types.js';
import { apiHandler } from './lib/api-handler.js';
import { aws } from './lib/deps.js';
import { json } from './lib/http.js';

/** `GET /v1/videos/{id}`: status, progress, output links, metrics; another tenant's job is a 404. */
export function makeGetVideoHandler(getDeps: () => ApiDeps) {
  return apiHandler(getDeps, async (deps, call, event) => json(200, await getVideo(deps, call, event.pathParameters?.id ?? '')));
}

export const handler = makeGetVideoHandler(aws.api);
