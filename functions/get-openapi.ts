import middy from '@middy/core';
import type { ApiDeps } from '../shared/api/types.js';
import { openApiDocument } from '../shared/api/openapi.js';
import { aws } from './lib/deps.js';
import { baseUrlOf, json, type HttpEvent, type HttpResult } from './lib/http.js';
import { httpErrors } from './lib/middleware.js';

/** `GET /v1/openapi.json`: the API's OpenAPI 3.1 document, for this deployment's model and limits. No key needed. */
export function makeGetOpenApiHandler(getDeps: () => Pick<ApiDeps, 'manifest' | 'config'>) {
  return middy<HttpEvent, HttpResult>()
    .use(httpErrors())
    .handler(async (event) => {
      const { manifest, config } = getDeps();
      return json(200, openApiDocument(manifest, config, baseUrlOf(event)));
    });
}

export const handler = makeGetOpenApiHandler(aws.api);
