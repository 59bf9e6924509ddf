import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import {
  ApiError,
  MalformedJsonError,
  PayloadTooLargeError,
  UnsupportedMediaTypeError,
  type ApiErrorBody,
} from '../../shared/api/errors.js';
import { logger } from './logger.js';

export type HttpEvent = APIGatewayProxyEvent;
export type HttpResult = APIGatewayProxyResult;

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' };

export function json(statusCode: number, body: unknown, headers: Record<string, string> = {}): HttpResult {
  return { statusCode, headers: { ...JSON_HEADERS, ...headers }, body: JSON.stringify(body) };
}

/** The answer of a request that makes a job: 202 with its location, or 200 for a replayed idempotency key. */
export function jobCreated(result: { job: { urls: { get: string } }; created: boolean }): HttpResult {
  const { job, created } = result;
  return json(created ? 202 : 200, job, created ? { location: job.urls.get } : { 'idempotent-replayed': 'true' });
}

/**
 * The one place errors become HTTP responses: an ApiError shows its status, code, message and
 * field; anything else is a 500 whose details go to the log only.
 */
export function errorResponse(err: unknown, requestId?: string): HttpResult {
  if (err instanceof ApiError) {
    // Messages and fields can quote the caller's input (an unknown key, say): echo a bounded part.
    const body: ApiErrorBody = { error: { code: err.code, message: cap(err.message, MAX_MESSAGE), ...(err.field ? { field: cap(err.field, MAX_FIELD) } : {}) } };
    return json(err.status, body);
  }
  logger.error('unhandled error', { requestId, error: err instanceof Error ? err : String(err) });
  const body: ApiErrorBody = { error: { code: 'internal_error', message: 'internal error' + (requestId ? ` (request ${requestId})` : '') } };
  return json(500, body);
}

const MAX_MESSAGE = 500;
const MAX_FIELD = 100;

function cap(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}... (${text.length - max} more characters)`;
}

/** Case-insensitive header lookup (API Gateway v1 keeps the client's case). */
export function header(event: HttpEvent, name: string): string | undefined {
  const want = name.toLowerCase();
  for (const [k, v] of Object.entries(event.headers ?? {})) if (k.toLowerCase() === want && v !== undefined) return v;
  return undefined;
}

/** Parses a JSON body of at most `maxBytes`; malformed JSON is a 400 naming `body`. */
export function parseJsonBody(event: HttpEvent, maxBytes: number): unknown {
  const raw = event.body ?? '';
  const bytes = event.isBase64Encoded ? Buffer.from(raw, 'base64') : Buffer.from(raw, 'utf8');
  if (bytes.length > maxBytes) throw new PayloadTooLargeError(`body is larger than ${maxBytes} bytes`, 'body');
  const type = header(event, 'content-type');
  if (type !== undefined && !/^application\/(.+\+)?json\b/i.test(type)) {
    throw new UnsupportedMediaTypeError('content-type must be application/json', 'content-type');
  }
  if (bytes.length === 0) throw new MalformedJsonError('body is empty; expected a JSON object', 'body');
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (cause) {
    throw new MalformedJsonError(`body is not valid JSON: ${(cause as Error).message}`, 'body', { cause });
  }
}

/** Base URL for links back to the API: PUBLIC_API_URL, else the request's host (and stage on API Gateway). */
export function baseUrlOf(event: HttpEvent, env: NodeJS.ProcessEnv = process.env): string {
  if (env.PUBLIC_API_URL) return env.PUBLIC_API_URL.replace(/\/+$/, '');
  const host = header(event, 'host') ?? event.requestContext?.domainName ?? 'localhost';
  const proto = header(event, 'x-forwarded-proto') ?? 'https';
  const stage = event.requestContext?.stage;
  const withStage = stage && stage !== '$default' && /\.execute-api\./.test(host) ? `/${stage}` : '';
  return `${proto}://${host}${withStage}`;
}
