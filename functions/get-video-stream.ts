import { getVideoStream } from '../shared/api/videos.js';
import type { ApiDeps } from '../shared/api/types.js';
import { HLS_PLAYLIST_TYPE } from '../shared/media/hls.js';
import { apiHandler } from './lib/api-handler.js';
import { aws } from './lib/deps.js';

/** `GET /v1/videos/{id}/stream.m3u8`: the HLS playlist of the chunks made so far (ENDLIST once the job ended). */
export function makeGetVideoStreamHandler(getDeps: () => ApiDeps) {
  return apiHandler(getDeps, async (deps, call, event) => ({
    statusCode: 200,
    headers: { 'content-type': HLS_PLAYLIST_TYPE, 'cache-control': 'no-store' },
    body: await getVideoStream(deps, call, event.pathParameters?.id ?? ''),
  }));
}

export const handler = makeGetVideoStreamHandler(aws.api);
