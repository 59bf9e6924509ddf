import { createWriteStream } from 'node:fs';
import { rename } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { z } from 'zod';
import type { ApiErrorBody } from './errors.js';
import type { createVideoBodySchema, extendVideoBodySchema } from './request.js';
import type { Upload } from './uploads.js';
import type { PublicJob, PublicJobSummary } from './render.js';
import type { ListVideosResult } from './videos.js';

/** The JSON body of `POST /v1/videos`: the input type of the schema the API validates it with. */
export type CreateVideoRequest = z.input<ReturnType<typeof createVideoBodySchema>>;

/** A non-2xx answer; `code` and `field` come from the API's error body. */
export class ApiClientError extends Error {
  override name = 'ApiClientError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(`${status} ${code}${field ? ` (${field})` : ''}: ${message}`);
  }
}

export interface Ca2vdmClientOptions {
  /** e.g. `http://127.0.0.1:8080`. */
  baseUrl: string;
  apiKey: string;
  fetch?: typeof fetch;
}

const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);

/** Typed fetch client of the public API; the CLI and the demo use it. */
export class Ca2vdmClient {
  private readonly base: string;
  private readonly doFetch: typeof fetch;

  constructor(private readonly opts: Ca2vdmClientOptions) {
    this.base = opts.baseUrl.replace(/\/+$/, '');
    this.doFetch = opts.fetch ?? fetch;
  }

  createVideo(body: CreateVideoRequest, opts: { idempotencyKey?: string } = {}): Promise<PublicJobSummary> {
    return this.call('POST', '/v1/videos', body, opts.idempotencyKey ? { 'idempotency-key': opts.idempotencyKey } : {});
  }

  /** A new job continuing a succeeded video from its last frame (`POST /v1/videos/{id}/extend`). */
  extendVideo(id: string, body: z.input<ReturnType<typeof extendVideoBodySchema>>, opts: { idempotencyKey?: string } = {}): Promise<PublicJobSummary> {
    return this.call('POST', `/v1/videos/${encodeURIComponent(id)}/extend`, body, opts.idempotencyKey ? { 'idempotency-key': opts.idempotencyKey } : {});
  }

  getVideo(id: string): Promise<PublicJob> {
    return this.call('GET', `/v1/videos/${encodeURIComponent(id)}`);
  }

  listVideos(opts: { limit?: number; cursor?: string } = {}): Promise<ListVideosResult> {
    const q = new URLSearchParams();
    if (opts.limit !== undefined) q.set('limit', String(opts.limit));
    if (opts.cursor !== undefined) q.set('cursor', opts.cursor);
    return this.call('GET', `/v1/videos${q.size ? `?${q}` : ''}`);
  }

  cancelVideo(id: string): Promise<PublicJobSummary & { detail: string }> {
    return this.call('POST', `/v1/videos/${encodeURIComponent(id)}/cancel`);
  }

  webhookSecret(): Promise<{ key: string }> {
    return this.call('GET', '/v1/webhooks/default/secret');
  }

  /** Polls until the job is terminal, calling `onProgress` on every change; returns the final job. */
  async waitFor(
    id: string,
    opts: { intervalMs?: number; timeoutMs?: number; signal?: AbortSignal; onProgress?: (job: PublicJob) => void } = {},
  ): Promise<PublicJob> {
    const deadline = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
    let last = '';
    for (;;) {
      const job = await this.getVideo(id);
      const stamp = `${job.status}:${job.progress.chunks_done}:${job.progress.frames_done}`;
      if (stamp !== last) opts.onProgress?.(job);
      last = stamp;
      if (TERMINAL.has(job.status)) return job;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${id} (status ${job.status})`);
      opts.signal?.throwIfAborted();
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 1000));
    }
  }

  /**
   * Uploads one starting-frame PNG (`POST /v1/uploads`, then a PUT to the URL it returns) and
   * returns its id, for `init_frames`. The key goes only to this API's own URL, never to S3's.
   */
  async uploadFrame(png: Uint8Array): Promise<string> {
    const upload = await this.call<Upload>('POST', '/v1/uploads', { bytes: png.byteLength });
    const own = upload.upload_url.startsWith(this.base + '/');
    const res = await this.doFetch(upload.upload_url, {
      method: 'PUT',
      headers: { ...(own ? this.authHeaders() : {}), 'content-type': 'image/png' },
      body: new Uint8Array(png),
    });
    if (!res.ok) throw await this.errorOf(res);
    return upload.id;
  }

  /** Downloads an output link to `file` (via a temp file); the API key is sent only to this API's own links. */
  async download(url: string, file: string): Promise<void> {
    const own = url.startsWith(this.base + '/');
    const res = await this.doFetch(url, { headers: own ? this.authHeaders() : {} });
    if (!res.ok || !res.body) throw await this.errorOf(res);
    const tmp = `${file}.part`;
    await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), createWriteStream(tmp));
    await rename(tmp, file);
  }

  private authHeaders(): Record<string, string> {
    // Both forms: API Gateway's usage plans read `x-api-key`; the handlers take either.
    return { authorization: `Bearer ${this.opts.apiKey}`, 'x-api-key': this.opts.apiKey };
  }

  private async call<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    const res = await this.doFetch(this.base + path, {
      method,
      headers: { ...this.authHeaders(), ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    if (!res.ok) throw await this.errorOf(res);
    return (await res.json()) as T;
  }

  private async errorOf(res: Response): Promise<ApiClientError> {
    const text = await res.text().catch(() => '');
    try {
      const { error } = JSON.parse(text) as ApiErrorBody;
      return new ApiClientError(res.status, error.code, error.message, error.field);
    } catch {
      return new ApiClientError(res.status, 'http_error', text.slice(0, 200) || res.statusText);
    }
  }
}
