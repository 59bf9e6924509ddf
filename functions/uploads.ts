import type { ApiDeps } from '../shared/api/types.js';
import { PayloadTooLargeError } from '../shared/api/errors.js';
import { createUpload, putUpload } from '../shared/api/uploads.js';
import { apiHandler } from './lib/api-handler.js';
import { aws } from './lib/deps.js';
import { json, parseJsonBody } from './lib/http.js';

/** `POST /v1/uploads` `{bytes}`: 201 with the upload's id and the URL to PUT the PNG to. */
export function makeCreateUploadHandler(getDeps: () => ApiDeps) {
  return apiHandler(getDeps, async (deps, call, event) => {
    const upload = await createUpload(deps, call, parseJsonBody(event, deps.config.maxBodyBytes));
    return json(201, upload);
  });
}

/** `PUT /v1/uploads/{id}` (embedded mode; AWS uploads go to S3): the PNG's bytes, once. */
export function makePutUploadHandler(getDeps: () => ApiDeps) {
  return apiHandler(getDeps, async (deps, call, event) => {
    const raw = event.body ?? '';
    const bytes = event.isBase64Encoded ? Buffer.from(raw, 'base64') : Buffer.from(raw, 'utf8');
    if (bytes.length > deps.config.maxUploadBytes) throw new PayloadTooLargeError(`upload is larger than ${deps.config.maxUploadBytes} bytes`, 'body');
    return json(200, await putUpload(deps, call, event.pathParameters?.id ?? '', bytes));
  });
}

export const handler = makeCreateUploadHandler(aws.api);
