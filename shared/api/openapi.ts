/**
 * The OpenAPI 3.1 document of the API, generated from the zod schemas the code validates requests
 * with and builds responses by (`request.ts`, `render.ts`, `errors.ts`): nothing here restates a
 * field. Limits follow the serving model and the config, so each deployment describes itself.
 */
import { z } from 'zod';
import { isLatentManifest, type ServedManifest } from '../model/served.js';
import type { ApiConfig } from './config.js';
import { ApiErrorBodySchema } from './errors.js';
import { CancelVideoResponseSchema, ListVideosResponseSchema, PublicJobSchema, PublicJobSummarySchema, WebhookSecretResponseSchema } from './render.js';
import { createVideoBodySchema, extendVideoBodySchema } from './request.js';
import { createUploadBodySchema, UploadReceiptSchema, UploadSchema } from './uploads.js';

type JsonSchema = Record<string, unknown>;

/** JSON Schema 2020-12 (OpenAPI 3.1's dialect) of a zod schema, as a request (`input`) or a response (`output`). */
export function jsonSchemaOf(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
}

/** The components every path refers to, by name. */
export function componentSchemas(manifest: ServedManifest, config: ApiConfig): Record<string, JsonSchema> {
  return {
    CreateVideoRequest: jsonSchemaOf(createVideoBodySchema(manifest, config), 'input'),
    ExtendVideoRequest: jsonSchemaOf(extendVideoBodySchema(manifest, config), 'input'),
    Video: jsonSchemaOf(PublicJobSchema, 'output'),
    VideoSummary: jsonSchemaOf(PublicJobSummarySchema, 'output'),
    VideoList: jsonSchemaOf(ListVideosResponseSchema, 'output'),
    CancelResult: jsonSchemaOf(CancelVideoResponseSchema, 'output'),
    WebhookSecret: jsonSchemaOf(WebhookSecretResponseSchema, 'output'),
    CreateUploadRequest: jsonSchemaOf(createUploadBodySchema(config.maxUploadBytes), 'input'),
    Upload: jsonSchemaOf(UploadSchema, 'output'),
    UploadReceipt: jsonSchemaOf(UploadReceiptSchema, 'output'),
    Error: jsonSchemaOf(ApiErrorBodySchema, 'output'),
  };
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const jsonContent = (name: string) => ({ 'application/json': { schema: ref(name) } });
const error = (description: string) => ({ description, content: jsonContent('Error') });
const ERRORS = {
  401: error('missing or unknown API key'),
  404: error('no such video for this caller (another tenant\'s video is a 404 too)'),
};
const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string' } };
const idempotencyKeyParam = { name: 'Idempotency-Key', in: 'header', required: false, schema: { type: 'string', minLength: 1, maxLength: 256 } };
/** What a request that makes a job answers: the new job, or the one its idempotency key made before. */
const jobCreated = (what: string) => ({
  202: { description: `accepted: ${what}`, content: jsonContent('VideoSummary') },
  200: { description: 'the job an earlier request with the same idempotency key and body made', content: jsonContent('VideoSummary') },
});

/** The whole document; `serverUrl` is the API's base URL as the caller sees it. */
export function openApiDocument(manifest: ServedManifest, config: ApiConfig, serverUrl: string): JsonSchema {
  const keyed = [{ bearer: [] }, { apiKey: [] }];
  return {
    openapi: '3.1.0',
    info: {
      title: 'ca2vdm',
      version: '1',
      description:
        `Long videos from an autoregressive video diffusion model, made chunk by chunk. Serving model ${manifest.name}: ` +
        `${manifest.frame.width}x${manifest.frame.height} frames, chunks of ${manifest.chunk_frames}` +
        (manifest.labels.length ? `, labels ${manifest.labels.map((l, i) => `${i}=${l}`).join(', ')}.` : ', unconditional.') +
        (isLatentManifest(manifest)
          ? ` A new video starts from 1 to ${manifest.p_max} starting images (init_frames); extend and fork continue a video's own frames.`
          : ''),
    },
    servers: [{ url: serverUrl }],
    components: {
      schemas: componentSchemas(manifest, config),
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer <API key>' },
        apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key' },
      },
    },
    security: keyed,
    paths: {
      '/v1/videos': {
        post: {
          operationId: 'createVideo',
          summary: 'Create a video job',
          parameters: [idempotencyKeyParam],
          requestBody: { required: true, content: jsonContent('CreateVideoRequest') },
          responses: {
            ...jobCreated('the new job'),
            400: error('the body or a field is invalid (the error names the field)'),
            401: ERRORS[401],
            404: error('`from.video` names no video of this caller'),
            409: error('the idempotency key or id was used with a different request, or `from.video` cannot be continued'),
            413: error('the body is larger than the limit'),
            415: error('the body is not JSON'),
          },
        },
        get: {
          operationId: 'listVideos',
          summary: "The caller's videos, newest first",
          parameters: [
            { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: config.maxPageSize } },
            { name: 'cursor', in: 'query', required: false, schema: { type: 'string' } },
          ],
          responses: { 200: { description: 'a page of videos', content: jsonContent('VideoList') }, 400: error('bad limit or cursor'), 401: ERRORS[401] },
        },
      },
      '/v1/videos/{id}': {
        get: {
          operationId: 'getVideo',
          summary: 'One video: status, progress, output links',
          parameters: [idParam],
          responses: { 200: { description: 'the video', content: jsonContent('Video') }, 401: ERRORS[401], 404: ERRORS[404] },
        },
      },
      '/v1/videos/{id}/cancel': {
        post: {
          operationId: 'cancelVideo',
          summary: 'Stop a video at the next chunk boundary',
          parameters: [idParam],
          responses: {
            202: { description: 'cancel requested', content: jsonContent('CancelResult') },
            200: { description: 'the video had already ended: nothing to cancel', content: jsonContent('CancelResult') },
            401: ERRORS[401],
            404: ERRORS[404],
          },
        },
      },
      '/v1/videos/{id}/extend': {
        post: {
          operationId: 'extendVideo',
          summary: 'A new job that continues a succeeded video from its last frame, through its stored cache',
          parameters: [idParam, idempotencyKeyParam],
          requestBody: { required: true, content: jsonContent('ExtendVideoRequest') },
          responses: {
            ...jobCreated('the new job (parent: {id, frames})'),
            400: error('a field is invalid (the error names it)'),
            401: ERRORS[401],
            404: ERRORS[404],
            409: error('the video has not succeeded, or another model made it'),
          },
        },
      },
      '/v1/videos/{id}/stream.m3u8': {
        get: {
          operationId: 'getVideoStream',
          summary: 'HLS playlist of the chunks made so far (EVENT; ENDLIST once the video ended)',
          parameters: [idParam],
          responses: {
            200: { description: 'the playlist', content: { 'application/vnd.apple.mpegurl': { schema: { type: 'string' } } } },
            401: ERRORS[401],
            404: ERRORS[404],
          },
        },
      },
      '/v1/videos/{id}/files/{path}': {
        get: {
          operationId: 'getVideoFile',
          summary: 'An output file, where the store cannot presign links (the embedded mode)',
          parameters: [idParam, { name: 'path', in: 'path', required: true, schema: { type: 'string' } }],
          responses: {
            200: { description: 'the file', content: { 'application/octet-stream': { schema: { type: 'string', contentEncoding: 'binary' } } } },
            401: ERRORS[401],
            404: ERRORS[404],
          },
        },
      },
      '/v1/webhooks/default/secret': {
        get: {
          operationId: 'getWebhookSecret',
          summary: "The caller's webhook signing secret",
          responses: { 200: { description: 'the secret', content: jsonContent('WebhookSecret') }, 401: ERRORS[401] },
        },
      },
      '/v1/uploads': {
        post: {
          operationId: 'createUpload',
          summary: 'Declare a starting-frame PNG; PUT it to upload_url, then name its id in init_frames',
          requestBody: { required: true, content: jsonContent('CreateUploadRequest') },
          responses: {
            201: { description: 'where to PUT the PNG (a presigned S3 URL on AWS)', content: jsonContent('Upload') },
            400: error('bad size or field'),
            401: ERRORS[401],
          },
        },
      },
      '/v1/uploads/{id}': {
        put: {
          operationId: 'putUpload',
          summary: "The declared PNG's bytes (the embedded API; on AWS upload_url is S3 itself)",
          parameters: [idParam],
          requestBody: { required: true, content: { 'image/png': { schema: { type: 'string', contentEncoding: 'binary' } } } },
          responses: {
            200: { description: 'stored', content: jsonContent('UploadReceipt') },
            401: ERRORS[401],
            404: error('no such upload for this caller'),
            409: error('already uploaded'),
            413: error('more bytes than declared'),
          },
        },
      },
      '/v1/openapi.json': {
        get: {
          operationId: 'getOpenApi',
          summary: 'This document',
          security: [],
          responses: { 200: { description: 'the OpenAPI document', content: { 'application/json': { schema: { type: 'object' } } } } },
        },
      },
    },
  };
}

/**
 * The create request's schema in the JSON Schema draft 4 that API Gateway request models take: the
 * same document, without what draft 4 does not know. Unknown fields pass the gateway so that the
 * handler, which refuses them too, can name the field in its error.
 */
export function apiGatewayRequestModel(manifest: ServedManifest, config: ApiConfig): JsonSchema {
  const { additionalProperties: _, ...schema } = jsonSchemaOf(createVideoBodySchema(manifest, config), 'input');
  return schema;
}
