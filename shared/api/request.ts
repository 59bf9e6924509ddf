import { z } from 'zod';
import { SAFE_ID_PATTERN, UPLOAD_ID_PATTERN } from '../schemas/ids.js';
import { WebhookUrlSchema } from '../schemas/job.js';
import { WEBHOOK_EVENT_TYPES } from '../schemas/webhook-event.js';
import { resolveLabel } from '../model/labels.js';
import { isLatentManifest, type ServedManifest } from '../model/served.js';
import type { ApiConfig } from './config.js';
import { ValidationError } from './errors.js';

/** Base64 of a PNG (optionally as a `data:image/png;base64,` URL). */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * The body of `POST /v1/videos`, bounded by the config and the model: one schema, so every rule
 * and its field name are in one place. Unknown fields are refused (a typo should not be ignored).
 */
export function createVideoBodySchema(manifest: ServedManifest, config: ApiConfig) {
  const maxSteps = Math.min(config.maxSteps, manifest.schedule.train_timesteps);
  const maxInit = Math.min(config.maxInitFrames, manifest.p_max);
  return z.strictObject({
    frames: z.int().min(1).max(config.maxFrames),
    seed: z.int().nonnegative().max(Number.MAX_SAFE_INTEGER).optional(),
    label: z
      .union([z.int(), z.string()])
      .optional()
      .refine((l) => l === undefined || resolveLabel(manifest, l) !== null, {
        message:
          manifest.labels.length === 0
            ? 'this model is unconditional: omit label'
            : `unknown label; expected one of ${manifest.labels.map((l, i) => `${i}=${l}`).join(', ')}`,
      }),
    guidance: z
      .number()
      .min(0)
      .max(config.maxGuidance)
      .optional()
      .refine((g) => g === undefined || manifest.guidance.supported || g === manifest.guidance.default, {
        message: 'this model does not support guidance',
      }),
    steps: z.int().min(1).max(maxSteps).optional(),
    init_frames: z
      .array(
        z
          .string()
          .transform((s) => s.replace(/^data:image\/png;base64,/, ''))
          .refine((s) => UPLOAD_ID_PATTERN.test(s) || (s.length > 0 && BASE64.test(s)), {
            message: 'must be a base64-encoded PNG or the id of an upload (POST /v1/uploads)',
          }),
      )
      .max(maxInit)
      .optional(),
    webhook: WebhookUrlSchema.optional(),
    webhook_events_filter: z
      .array(z.enum(WEBHOOK_EVENT_TYPES))
      .min(1)
      .refine((a) => new Set(a).size === a.length, { message: 'duplicate event type' })
      .optional(),
    /** Fork: continue video `video` from its frame `frame` (its first `frame` frames condition this one). */
    from: z.strictObject({ video: z.string().min(1).max(64), frame: z.int().min(1) }).optional(),
    /** Client-chosen job id; doubles as the idempotency key. */
    id: z.string().regex(SAFE_ID_PATTERN, 'must be 1-64 of [A-Za-z0-9_-], starting alphanumeric').optional(),
  });
}
export type CreateVideoBody = z.infer<ReturnType<typeof createVideoBodySchema>>;

/** The body of `POST /v1/videos/{id}/extend`: how many frames to add, and the usual job fields. */
export function extendVideoBodySchema(manifest: ServedManifest, config: ApiConfig) {
  return createVideoBodySchema(manifest, config).pick({ frames: true, seed: true, webhook: true, webhook_events_filter: true, id: true });
}

/**
 * What a model asks of a request beyond the schema: a latent (format-2) model continues given
 * frames (its spatial prefix cache starts from them), so a new video needs `init_frames`; a
 * continuation (`from`, extend) starts from its video's frames. Throws a ValidationError naming the field.
 */
export function checkRequestForModel(manifest: ServedManifest, request: { initFrames: number; continues: boolean }): void {
  if (!isLatentManifest(manifest) || request.continues) return;
  if (request.initFrames === 0) {
    throw new ValidationError(`init_frames: model ${manifest.name} continues given frames: send 1 to ${manifest.p_max} starting images`, 'init_frames');
  }
}

/** Parses with the schema; the first issue becomes a ValidationError naming its field (`init_frames.2`). */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ValidationError('body must be a JSON object', 'body');
  }
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  let field = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') field = [...issue.path.map(String), issue.keys[0]].join('.');
  throw new ValidationError(`${field || 'body'}: ${issue.message}`, field || 'body', { cause: parsed.error });
}
