import { listVideos } from '../shared/api/videos.js';
import type { ApiDeps } from '../shared/api/types.js';
import { apiHandler } from './lib/api-handler.js';
import { aws } from './lib/deps.js';
import { json } from './lib/http.js';

/** `GET /v1/videos?limit=&cursor=`: the caller's jobs, newest first. */
export function makeListVideosHandler(getDeps: () => ApiDeps) {
  return apiHandler(getDeps, async (deps, call, event) => {
    const q = event.queryStringParameters ?? {};
    return json(200, await listVideos(deps, call, { limit: q.limit, cursor: q.cursor }));
  });
}

export const handler = makeListVideosHandler(aws.api);
