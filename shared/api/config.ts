/** Limits and policies of the API; the embedded stack and the Lambda environment each build one. */
export interface ApiConfig {
  /** Largest `frames` a request may ask for. */
  maxFrames: number;
  /** Largest `steps` (sampling steps per chunk). */
  maxSteps: number;
  /** Largest `guidance` scale. */
  maxGuidance: number;
  /** Most starting frames a request may carry. */
  maxInitFrames: number;
  /** Largest request body, in bytes (API Gateway's own limit is 10 MB). */
  maxBodyBytes: number;
  /** AWS mode: webhooks must be https. */
  requireHttpsWebhooks: boolean;
  /** Embedded mode for local testing: webhooks may point at 127.0.0.0/8 and ::1. */
  allowLoopbackWebhooks: boolean;
  /** Lifetime of presigned output URLs. */
  presignExpirySec: number;
  /** Most jobs per page of `GET /v1/videos`. */
  maxPageSize: number;
  /** Largest starting-frame PNG sent through `POST /v1/uploads`, in bytes. */
  maxUploadBytes: number;
}

export const DEFAULT_API_CONFIG: ApiConfig = {
  maxFrames: 4096,
  maxSteps: 200,
  maxGuidance: 20,
  maxInitFrames: 64,
  maxBodyBytes: 6 * 1024 * 1024,
  requireHttpsWebhooks: true,
  allowLoopbackWebhooks: false,
  presignExpirySec: 3600,
  maxPageSize: 100,
  maxUploadBytes: 8 * 1024 * 1024,
};

/** The config from `API_*` environment variables over the defaults (Lambda: AWS mode, https only). */
export function apiConfigFromEnv(env: NodeJS.ProcessEnv = process.env): ApiConfig {
  const num = (name: string, dflt: number) => {
    const v = env[name];
    if (v === undefined || v === '') return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got ${JSON.stringify(v)}`);
    return n;
  };
  return {
    maxFrames: num('API_MAX_FRAMES', DEFAULT_API_CONFIG.maxFrames),
    maxSteps: num('API_MAX_STEPS', DEFAULT_API_CONFIG.maxSteps),
    maxGuidance: num('API_MAX_GUIDANCE', DEFAULT_API_CONFIG.maxGuidance),
    maxInitFrames: num('API_MAX_INIT_FRAMES', DEFAULT_API_CONFIG.maxInitFrames),
    maxBodyBytes: num('API_MAX_BODY_BYTES', DEFAULT_API_CONFIG.maxBodyBytes),
    requireHttpsWebhooks: env.API_ALLOW_HTTP_WEBHOOKS !== 'true',
    allowLoopbackWebhooks: false,
    presignExpirySec: num('API_PRESIGN_EXPIRY_SEC', DEFAULT_API_CONFIG.presignExpirySec),
    maxPageSize: num('API_MAX_PAGE_SIZE', DEFAULT_API_CONFIG.maxPageSize),
    maxUploadBytes: num('API_MAX_UPLOAD_BYTES', DEFAULT_API_CONFIG.maxUploadBytes),
  };
}
