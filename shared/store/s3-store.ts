import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { PreconditionFailedError } from './errors.js';
import {
  assertValidKey,
  assertValidPrefix,
  bodyBuffer,
  bodyLength,
  type ObjectHead,
  type ObjectStore,
  type PutBody,
  type PutOptions,
  type RangeRead,
  type StoredObject,
} from './object-store.js';

export interface S3StoreOptions {
  /** Created once by the caller and injected, so tests can hand in a mock or an emulator endpoint. */
  client: S3Client;
  bucket: string;
  /** Prepended to every key (e.g. `env/dev/`); hidden from callers, stripped from `list` results. */
  keyPrefix?: string;
  /** Bodies of at least this many bytes go up as a multipart upload (default 64 MiB). */
  multipartThreshold?: number;
  /** Bytes per part of multipart uploads and of parallel ranged reads (default 16 MiB; S3's minimum part is 5 MiB). */
  partBytes?: number;
  /** Parts in flight at once, per upload or ranged read (default 4). */
  concurrency?: number;
}

/** `ObjectStore` over S3; conditional puts use S3's native `If-None-Match` / `If-Match` on PutObject. */
export class S3Store implements ObjectStore {
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly keyPrefix: string;
  private readonly multipartThreshold: number;
  private readonly partBytes: number;
  private readonly concurrency: number;

  constructor({ client, bucket, keyPrefix = '', multipartThreshold = 64 * 2 ** 20, partBytes = 16 * 2 ** 20, concurrency = 4 }: S3StoreOptions) {
    this.client = client;
    this.bucket = bucket;
    this.keyPrefix = keyPrefix;
    this.multipartThreshold = multipartThreshold;
    this.partBytes = Math.max(5 * 2 ** 20, partBytes);
    this.concurrency = Math.max(1, concurrency);
  }

  async get(key: string): Promise<StoredObject | null> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.full(key) }));
      const bytes = out.Body ? await out.Body.transformToByteArray() : new Uint8Array();
      return { body: Buffer.from(bytes), etag: out.ETag ?? '', contentType: out.ContentType };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async head(key: string): Promise<ObjectHead | null> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.full(key) }));
      return { etag: out.ETag ?? '', size: out.ContentLength ?? 0, contentType: out.ContentType };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /**
   * Ranged GETs of `partBytes` each, `concurrency` at a time, each streamed straight into its slice
   * of `into` as it arrives (one copy, from the socket's buffers).
   */
  async readRange(key: string, start: number, into: Uint8Array): Promise<RangeRead | null> {
    // The first part learns the object's size and ETag; the rest then go in parallel, pinned to that
    // ETag, so an object replaced meanwhile fails the read instead of mixing two versions.
    const to0 = Math.min(into.byteLength, this.partBytes);
    const first = await this.getPart(key, start, start + Math.max(0, to0 - 1), into.subarray(0, to0), '');
    if (!first) return null;
    const parts: [number, number][] = [];
    for (let o = to0; o < into.byteLength; o += this.partBytes) parts.push([o, Math.min(into.byteLength, o + this.partBytes)]);
    const { size, etag } = first;
    let bytes = first.bytes;
    let next = 0;
    const lane = async () => {
      while (next < parts.length) {
        const [from, to] = parts[next++];
        if (start + from >= size) continue; // past the end of a smaller object
        const got = await this.getPart(key, start + from, start + to - 1, into.subarray(from, to), etag);
        if (!got) throw new Error(`${key} disappeared during a ranged read`);
        bytes += got.bytes;
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, parts.length) }, lane));
    return { bytes, size, etag };
  }

  /** GET bytes [first, last] into `into`; `ifMatch` (when known) makes a replaced object fail rather than mix. */
  private async getPart(key: string, first: number, last: number, into: Uint8Array, ifMatch: string): Promise<RangeRead | null> {
    try {
      const out = await this.client.send(new GetObjectCommand({
        Bucket: this.bucket, Key: this.full(key), Range: `bytes=${first}-${last}`, IfMatch: ifMatch || undefined,
      }));
      let bytes = 0;
      for await (const chunk of (out.Body ?? []) as AsyncIterable<Uint8Array>) {
        const n = Math.min(chunk.byteLength, into.byteLength - bytes);
        into.set(chunk.subarray(0, n), bytes);
        bytes += n;
      }
      const total = /\/(\d+)$/.exec(out.ContentRange ?? '')?.[1];
      return { bytes, size: total !== undefined ? Number(total) : (out.ContentLength ?? bytes), etag: out.ETag ?? '' };
    } catch (err) {
      if (isNotFound(err)) return null;
      // Asked from beyond the end of the object (only the first part can be: the others start below
      // the size it learned): no bytes there; a HEAD tells the object's size and ETag.
      if (httpStatus(err) === 416 || errorName(err) === 'InvalidRange') {
        const head = await this.head(key);
        return head && { bytes: 0, size: head.size, etag: head.etag };
      }
      throw err;
    }
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<{ etag: string }> {
    if (bodyLength(body) >= this.multipartThreshold) return this.putMultipart(key, body, options);
    const { ifNoneMatch, ifMatch, contentType, tags } = options;
    try {
      const out = await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.full(key),
          Body: Array.isArray(body) ? bodyBuffer(body) : (body as Buffer | Uint8Array | string),
          ContentType: contentType,
          IfNoneMatch: ifNoneMatch,
          IfMatch: ifMatch,
          Tagging: tags ? new URLSearchParams(tags).toString() : undefined,
        }),
      );
      return { etag: out.ETag ?? '' };
    } catch (err) {
      throw conditionalWriteError(err, key, { ifNoneMatch, ifMatch });
    }
  }

  /**
   * A large body as a multipart upload: parts of `partBytes`, `concurrency` at a time, cut from the
   * body's own parts (only a part that straddles two of them is copied). The condition rides on
   * CompleteMultipartUpload, so the object appears whole or not at all, and only if it still holds;
   * a failed upload is aborted so its parts are not billed.
   */
  private async putMultipart(key: string, body: PutBody, options: PutOptions): Promise<{ etag: string }> {
    const { ifNoneMatch, ifMatch, contentType, tags } = options;
    const pieces = typeof body === 'string' ? [Buffer.from(body)] : Array.isArray(body) ? (body as readonly Uint8Array[]) : [body as Uint8Array];
    const total = bodyLength(body);
    const Key = this.full(key);
    const created = await this.client.send(new CreateMultipartUploadCommand({
      Bucket: this.bucket, Key, ContentType: contentType, Tagging: tags ? new URLSearchParams(tags).toString() : undefined,
    }));
    const UploadId = created.UploadId!;
    try {
      const count = Math.ceil(total / this.partBytes);
      const etags: string[] = [];
      let next = 0;
      const lane = async () => {
        while (next < count) {
          const n = next++;
          const part = slicePieces(pieces, n * this.partBytes, Math.min(total, (n + 1) * this.partBytes));
          const out = await this.client.send(new UploadPartCommand({ Bucket: this.bucket, Key, UploadId, PartNumber: n + 1, Body: part }));
          etags[n] = out.ETag ?? '';
        }
      };
      await Promise.all(Array.from({ length: Math.min(this.concurrency, count) }, lane));
      const out = await this.client.send(new CompleteMultipartUploadCommand({
        Bucket: this.bucket, Key, UploadId, IfNoneMatch: ifNoneMatch, IfMatch: ifMatch,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
      }));
      return { etag: out.ETag ?? '' };
    } catch (err) {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId })).catch(() => {});
      throw conditionalWriteError(err, key, { ifNoneMatch, ifMatch });
    }
  }

  async list(prefix: string): Promise<string[]> {
    assertValidPrefix(prefix);
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const out = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.keyPrefix + prefix, ContinuationToken: token }),
      );
      for (const item of out.Contents ?? []) {
        if (item.Key !== undefined) keys.push(item.Key.slice(this.keyPrefix.length));
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    // S3 already lists in UTF-8 byte order; sorting (array sort compares strings by UTF-16 code
    // unit, the port's order) keeps the contract when pages or emulators disagree.
    return keys.sort();
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.full(key) }));
  }

  presignGet(key: string, expiresSec: number): Promise<string> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: this.full(key) }), {
      expiresIn: expiresSec,
    });
  }

  /** The length and type are signed: S3 refuses a PUT of any other size or type with this URL. */
  presignPut(key: string, opts: { expiresSec: number; contentLength: number; contentType: string }): Promise<string> {
    const command = new PutObjectCommand({ Bucket: this.bucket, Key: this.full(key), ContentLength: opts.contentLength, ContentType: opts.contentType });
    return getSignedUrl(this.client, command, { expiresIn: opts.expiresSec, signableHeaders: new Set(['content-length', 'content-type']) });
  }

  private full(key: string): string {
    assertValidKey(key);
    return this.keyPrefix + key;
  }
}

/** Bytes [from, to) of the concatenation of `pieces`: a view when they lie in one piece, else a copy. */
function slicePieces(pieces: readonly Uint8Array[], from: number, to: number): Uint8Array {
  const out: Uint8Array[] = [];
  let o = 0;
  for (const p of pieces) {
    const a = Math.max(from, o), b = Math.min(to, o + p.byteLength);
    if (a < b) out.push(p.subarray(a - o, b - o));
    o += p.byteLength;
  }
  return out.length === 1 ? out[0] : Buffer.concat(out);
}

function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

function errorName(err: unknown): string | undefined {
  return (err as { name?: string } | null)?.name;
}

function isNotFound(err: unknown): boolean {
  const name = errorName(err);
  if (name === 'NoSuchBucket') return false; // a misconfiguration, not a missing object
  return name === 'NoSuchKey' || name === 'NotFound' || httpStatus(err) === 404;
}

/**
 * A failed conditional write as the port reports it: PreconditionFailedError when the condition did
 * not hold (412), a concurrent conditional write to the key won (409 ConditionalRequestConflict), or
 * If-Match found nothing to compare against (404); any other error as it is.
 */
function conditionalWriteError(err: unknown, key: string, conditions: { ifNoneMatch?: '*'; ifMatch?: string }): unknown {
  const { ifNoneMatch, ifMatch } = conditions;
  const status = httpStatus(err);
  const lost =
    status === 412 ||
    errorName(err) === 'PreconditionFailed' ||
    errorName(err) === 'ConditionalRequestConflict' ||
    (status === 409 && (ifNoneMatch !== undefined || ifMatch !== undefined)) ||
    (ifMatch !== undefined && isNotFound(err));
  return lost ? new PreconditionFailedError(key, { ifNoneMatch, ifMatch }, { cause: err }) : err;
}
