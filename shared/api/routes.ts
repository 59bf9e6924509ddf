/**
 * Every route of the API, once: the embedded server (functions/local/server.ts) and API Gateway
 * (infra/constructs/api.ts) are both built from this table. A route names its handler by id; the
 * server maps the id to the handler factory, the CDK construct to the Lambda function of that name.
 */

export interface ApiRoute {
  method: 'GET' | 'POST' | 'PUT';
  /** Path template: `{name}` is one segment, `{name+}` the rest of the path. */
  path: string;
  handler: string;
  /** False for the public routes (the web page, the OpenAPI document); every other route needs an API key. */
  key?: false;
  /** Optional query parameters and headers API Gateway lets through (and checks by name). */
  query?: readonly string[];
  headers?: readonly string[];
  /** The zod request schema API Gateway validates the JSON body with (shared/api/openapi.ts). */
  body?: 'createVideo';
  /** Served by the embedded server only: on AWS the link is a presigned S3 URL instead. */
  embeddedOnly?: true;
}

export const API_ROUTES = [
  // The web page and its script (not part of the API: it calls the API with the key the user pastes).
  { method: 'GET', path: '/', handler: 'getPage', key: false },
  { method: 'GET', path: '/assets/{name}', handler: 'getPage', key: false },
  { method: 'POST', path: '/v1/videos', handler: 'createVideo', body: 'createVideo', headers: ['Idempotency-Key'] },
  { method: 'GET', path: '/v1/videos', handler: 'listVideos', query: ['cursor', 'limit'] },
  { method: 'GET', path: '/v1/videos/{id}', handler: 'getVideo' },
  { method: 'POST', path: '/v1/videos/{id}/cancel', handler: 'cancelVideo' },
  { method: 'POST', path: '/v1/videos/{id}/extend', handler: 'extendVideo', headers: ['Idempotency-Key'] },
  { method: 'GET', path: '/v1/videos/{id}/stream.m3u8', handler: 'getVideoStream' },
  { method: 'GET', path: '/v1/videos/{id}/files/{path+}', handler: 'getVideoFile', embeddedOnly: true },
  { method: 'GET', path: '/v1/webhooks/default/secret', handler: 'webhookSecret' },
  { method: 'GET', path: '/v1/openapi.json', handler: 'getOpenApi', key: false },
  { method: 'POST', path: '/v1/uploads', handler: 'createUpload' },
  { method: 'PUT', path: '/v1/uploads/{id}', handler: 'putUpload', embeddedOnly: true },
] as const satisfies readonly ApiRoute[];

export type ApiRouteEntry = (typeof API_ROUTES)[number];
/** Handler ids of every route: the embedded server has a handler for each. */
export type ApiHandlerId = ApiRouteEntry['handler'];
/** The routes API Gateway serves, and their handler ids: each is a Lambda function of that name. */
export type CloudRoute = Exclude<ApiRouteEntry, { embeddedOnly: true }>;
export type CloudHandlerId = CloudRoute['handler'];

export const CLOUD_ROUTES: readonly CloudRoute[] = API_ROUTES.filter((r): r is CloudRoute => !('embeddedOnly' in r));

/** The names of a path template's parameters, in order (`{path+}` gives `path`). */
export function pathParameters(path: string): string[] {
  return [...path.matchAll(/\{(\w+)\+?\}/g)].map((m) => m[1]);
}
