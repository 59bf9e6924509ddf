import { z } from 'zod';

/**
 * Errors the API shows to callers. Each carries its HTTP status and a stable `code`; 4xx errors name
 * the offending `field` where there is one. Anything that is not an ApiError is a 500 with no details.
 */
export class ApiError extends Error {
  override name = 'ApiError';
  readonly status: number = 400;
  readonly code: string = 'bad_request';
  constructor(
    message: string,
    readonly field?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** 400: the body or a parameter is malformed or out of range. */
export class ValidationError extends ApiError {
  override name = 'ValidationError';
  override readonly code = 'invalid_request';
  override readonly status = 400;
}

/** 400: the body is not JSON. */
export class MalformedJsonError extends ApiError {
  override name = 'MalformedJsonError';
  override readonly code = 'malformed_json';
  override readonly status = 400;
}

/** 401: no API key, or an unknown one. */
export class UnauthorizedError extends ApiError {
  override name = 'UnauthorizedError';
  override readonly code = 'unauthorized';
  override readonly status = 401;
}

/** 404: no such job for this tenant (another tenant's job is a 404 too, never a 403). */
export class NotFoundError extends ApiError {
  override name = 'NotFoundError';
  override readonly code = 'not_found';
  override readonly status = 404;
}

/** 404: no route. */
export class RouteNotFoundError extends ApiError {
  override name = 'RouteNotFoundError';
  override readonly code = 'route_not_found';
  override readonly status = 404;
}

/** 405: the route exists, the method does not. */
export class MethodNotAllowedError extends ApiError {
  override name = 'MethodNotAllowedError';
  override readonly code = 'method_not_allowed';
  override readonly status = 405;
}

/** 409: the idempotency key was used before with a different body. */
export class IdempotencyConflictError extends ApiError {
  override name = 'IdempotencyConflictError';
  override readonly code = 'idempotency_conflict';
  override readonly status = 409;
}

/** 409: the video to continue cannot be continued (not finished, or made by another model). */
export class ContinuationConflictError extends ApiError {
  override name = 'ContinuationConflictError';
  override readonly code = 'cannot_continue';
  override readonly status = 409;
}

/** 413: the body is larger than the configured limit. */
export class PayloadTooLargeError extends ApiError {
  override name = 'PayloadTooLargeError';
  override readonly code = 'payload_too_large';
  override readonly status = 413;
}

/** 415: the body is not `application/json`. */
export class UnsupportedMediaTypeError extends ApiError {
  override name = 'UnsupportedMediaTypeError';
  override readonly code = 'unsupported_media_type';
  override readonly status = 415;
}

/** JSON body of every error response. */
export const ApiErrorBodySchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), field: z.string().optional() }),
});
export type ApiErrorBody = z.infer<typeof ApiErrorBodySchema>;
