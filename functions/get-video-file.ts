import { getVideoFile } from '../shared/api/videos.js';
import type { ApiDeps } from '../shared/api/types.js';
import { apiHandler } from './lib/api-handler.js';
import { aws } from './lib/deps.js';

/**
 * `GET /v1/videos/{id}/files/{path+}`: an output file (video, preview, chunk frames). Output links
 * point here only where the store cannot presign (the embedded mode); on AWS they are S3 URLs.
 */
export function makeGetVideoFileHandler(getDeps: () => ApiDeps) {
  return apiHandler(getDeps, async (deps, call, event) => {
    const { body, contentType } = await getVideoFile(deps, call, event.pathParameters?.id ?? '', event.pathParameters?.path ?? '');
    return { statusCode: 200, headers: { 'content-type': contentType }, body: body.toString('base64'), isBase64Encoded: true };
  });
}

export const handler = makeGetVideoFileHandler(aws.api);
