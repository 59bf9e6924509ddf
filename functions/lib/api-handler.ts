import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { ApiDeps } from '../../shared/api/types.js';
import type { CallContext } from '../../shared/api/types.js';
import { baseUrlOf, type HttpEvent, type HttpResult } from './http.js';
import { logger } from './logger.js';
import { apiKeyAuth, httpErrors, type ApiContext } from './middleware.js';

/** The plain function behind one route: gets the deps, the caller and the event; returns the response. */
export type ApiRoute = (deps: ApiDeps, call: CallContext, event: HttpEvent) => Promise<HttpResult>;

/** Wraps a route in the API middlewares: the logger's Lambda context, errors -> HTTP, then API-key auth. */
export function apiHandler(getDeps: () => ApiDeps, route: ApiRoute) {
  return middy<HttpEvent, HttpResult, Error, ApiContext>()
    .use(injectLambdaContext(logger))
    .use(httpErrors())
    .use(apiKeyAuth(() => getDeps().store))
    .handler(async (event, context) => route(getDeps(), { tenant: context.tenant, baseUrl: baseUrlOf(event) }, event));
}
