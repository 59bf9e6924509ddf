import { randomUUID } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { APIGatewayProxyEvent, Context } from 'aws-lambda';
import type { ApiConfig } from '../../shared/api/config.js';
import { MethodNotAllowedError, PayloadTooLargeError, RouteNotFoundError } from '../../shared/api/errors.js';
import { API_ROUTES, pathParameters, type ApiHandlerId } from '../../shared/api/routes.js';
import type { ApiDeps } from '../../shared/api/types.js';
import type { ServedManifest } from '../../shared/model/served.js';
import type { TaskQueue } from '../../shared/queue/task-queue.js';
import type { ObjectStore } from '../../shared/store/object-store.js';
import { makeCancelVideoHandler } from '../cancel-video.js';
import { makeCreateVideoHandler } from '../create-video.js';
import { makeExtendVideoHandler } from '../extend-video.js';
import { makeCreateUploadHandler, makePutUploadHandler } from '../uploads.js';
import { makeGetOpenApiHandler } from '../get-openapi.js';
import { makeGetPageHandler } from '../get-page.js';
import { makeGetVideoFileHandler } from '../get-video-file.js';
import { makeGetVideoHandler } from '../get-video.js';
import { makeGetVideoStreamHandler } from '../get-video-stream.js';
import { errorResponse, type HttpResult } from '../lib/http.js';
import { makeListVideosHandler } from '../list-videos.js';
import { makeWebhookSecretHandler } from '../webhook-secret.js';

export interface ApiServerOptions {
  store: ObjectStore;
  chunkQueue: TaskQueue;
  /** Not used by the API itself (the worker sends events); kept so the embedded stack passes one set. */
  webhookQueue: TaskQueue;
  manifest: ServedManifest;
  config: ApiConfig;
  port?: number;
  /** Loopback only by default. */
  host?: string;
  /** Base of the links in responses; default the address the server listens on. Never the request's Host header. */
  publicUrl?: string;
}

/** The client went away before its request was read: nothing to answer, nothing to log as a failure. */
class ClientAbortedError extends Error {
  override name = 'ClientAbortedError';
}

type LambdaHandler = (event: APIGatewayProxyEvent, context: Context) => Promise<HttpResult>;

interface Route {
  method: string;
  pattern: RegExp;
  params: string[];
  handler: LambdaHandler;
}

/**
 * The embedded API: a node:http server on loopback that turns each request into an API Gateway
 * (v1 payload) event and calls the same middy handlers the Lambdas export.
 */
export async function startApiServer(opts: ApiServerOptions): Promise<{ url: string; close(): Promise<void> }> {
  const deps: ApiDeps = { store: opts.store, chunkQueue: opts.chunkQueue, manifest: opts.manifest, config: opts.config };
  const getDeps = () => deps;
  const handlers = routeHandlers(getDeps);
  const routes: Route[] = API_ROUTES.map(({ method, path, handler }) => ({
    method,
    pattern: new RegExp(`^${path.replaceAll('.', '\\.').replace(/\{\w+(\+?)\}/g, (_, greedy: string) => (greedy ? '(.+)' : '([^/]+)'))}$`),
    params: pathParameters(path),
    handler: handlers[handler] as LambdaHandler,
  }));

  const server = http.createServer((req, res) => {
    handle(req).then(
      (result) => send(res, result),
      (err) => (err instanceof ClientAbortedError ? res.destroy() : send(res, errorResponse(err))),
    );
  });
  // Set once listening; links are built from it, so a forged Host header cannot redirect them.
  let base = new URL('http://127.0.0.1');

  async function handle(req: http.IncomingMessage): Promise<HttpResult> {
    const url = new URL(req.url ?? '/', 'http://local');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const matching = routes.filter((r) => r.pattern.test(path));
    if (matching.length === 0) throw new RouteNotFoundError(`no route ${path}`, 'path');
    const r = matching.find((m) => m.method === req.method);
    if (!r) throw new MethodNotAllowedError(`${req.method} is not allowed on ${path}`, 'method');
    const m = r.pattern.exec(path)!;
    const pathParameters = Object.fromEntries(r.params.map((p, i) => [p, decodePathPart(m[i + 1], path)]));
    const body = await readBody(req, Math.max(opts.config.maxBodyBytes, opts.config.maxUploadBytes));
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers[k] = v;
    headers.host = base.host;
    headers['x-forwarded-proto'] = base.protocol.replace(':', '');
    const query = Object.fromEntries(url.searchParams);
    const requestId = randomUUID();
    const event = {
      resource: r.pattern.source,
      path,
      httpMethod: req.method ?? 'GET',
      headers,
      multiValueHeaders: {},
      queryStringParameters: Object.keys(query).length ? query : null,
      multiValueQueryStringParameters: null,
      pathParameters: Object.keys(pathParameters).length ? pathParameters : null,
      stageVariables: null,
      requestContext: { requestId, stage: '$default', domainName: headers.host ?? 'localhost' },
      // As API Gateway passes a binary body: base64 (handlers decode by isBase64Encoded).
      body: body.length ? body.toString('base64') : null,
      isBase64Encoded: true,
    } as unknown as APIGatewayProxyEvent;
    const context = { awsRequestId: requestId, functionName: 'local', getRemainingTimeInMillis: () => 30_000 } as Context;
    return r.handler(event, context);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8080, opts.host ?? '127.0.0.1', () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;
  base = new URL(opts.publicUrl ?? url);
  let closing: Promise<void> | undefined;
  return {
    url,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** Reads at most `max` bytes; one more is a 413 (the body is not buffered past the limit). */
function readBody(req: http.IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        req.removeAllListeners('data');
        req.resume();
        reject(new PayloadTooLargeError(`body is larger than ${max} bytes`, 'body'));
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    // A client that hangs up mid-upload: the promise settles (no hang), quietly.
    req.on('error', (err) => reject(req.complete ? err : new ClientAbortedError(err.message, { cause: err })));
    req.on('close', () => { if (!req.complete) reject(new ClientAbortedError('client closed the request')); });
  });
}

function send(res: http.ServerResponse, result: HttpResult): void {
  const body = result.isBase64Encoded ? Buffer.from(result.body, 'base64') : Buffer.from(result.body ?? '', 'utf8');
  const headers: Record<string, string | number> = {};
  for (const [k, v] of Object.entries(result.headers ?? {})) headers[k] = v as string | number;
  headers['content-length'] = body.length;
  res.writeHead(result.statusCode, headers);
  res.end(body);
}

/** A path segment, percent-decoded; a malformed escape (`%ZZ`) names no resource: 404. */
function decodePathPart(part: string, path: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new RouteNotFoundError(`no route ${path}`, 'path');
  }
}

/** The handler behind each route id of the route table (shared/api/routes.ts). */
function routeHandlers(getDeps: () => ApiDeps): Record<ApiHandlerId, unknown> {
  return {
    getPage: makeGetPageHandler(),
    createVideo: makeCreateVideoHandler(getDeps),
    listVideos: makeListVideosHandler(getDeps),
    getVideo: makeGetVideoHandler(getDeps),
    cancelVideo: makeCancelVideoHandler(getDeps),
    extendVideo: makeExtendVideoHandler(getDeps),
    getVideoStream: makeGetVideoStreamHandler(getDeps),
    getVideoFile: makeGetVideoFileHandler(getDeps),
    webhookSecret: makeWebhookSecretHandler(getDeps),
    getOpenApi: makeGetOpenApiHandler(getDeps),
    createUpload: makeCreateUploadHandler(getDeps),
    putUpload: makePutUploadHandler(getDeps),
  };
}
