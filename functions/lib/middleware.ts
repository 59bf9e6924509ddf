import type middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { UnauthorizedError } from '../../shared/api/errors.js';
import { resolveApiKey } from '../../shared/auth/api-keys.js';
import type { ObjectStore } from '../../shared/store/object-store.js';
import { errorResponse, header, type HttpEvent, type HttpResult } from './http.js';

/** Lambda context plus what the API middlewares add. */
export interface ApiContext extends Context {
  tenant: string;
}

type Request = middy.Request<HttpEvent, HttpResult, Error, ApiContext>;

/** Maps any error to its HTTP response (see `errorResponse`); 4xx show their message, 5xx do not. */
export function httpErrors(): middy.MiddlewareObj<HttpEvent, HttpResult, Error, ApiContext> {
  const onError = async (request: Request) => {
    request.response = errorResponse(request.error, request.context?.awsRequestId);
  };
  return { onError };
}

/** API key (`Authorization: Bearer KEY` or `x-api-key`) -> `context.tenant`; unknown keys are a 401. */
export function apiKeyAuth(getStore: () => ObjectStore): middy.MiddlewareObj<HttpEvent, HttpResult, Error, ApiContext> {
  const before = async (request: Request) => {
    const bearer = /^Bearer\s+(\S+)$/i.exec(header(request.event, 'authorization') ?? '')?.[1];
    const xApiKey = header(request.event, 'x-api-key');
    // Both may come (API Gateway meters the x-api-key one): they must name the same key.
    if (bearer !== undefined && xApiKey !== undefined && bearer !== xApiKey) {
      throw new UnauthorizedError('Authorization and x-api-key carry different API keys', 'authorization');
    }
    const key = bearer ?? xApiKey;
    if (!key) throw new UnauthorizedError('missing API key: send Authorization: Bearer <key>', 'authorization');
    const tenant = await resolveApiKey(getStore(), key);
    if (!tenant) throw new UnauthorizedError('unknown API key', 'authorization');
    request.context.tenant = tenant;
  };
  return { before };
}
