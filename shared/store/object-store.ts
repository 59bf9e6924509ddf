import { InvalidKeyError } from './errors.js';

/** An object as read back: the bytes and the ETag to pass to a later `put(..., { ifMatch })`. */
export interface StoredObject {
  body: Buffer;
  etag: string;
  contentType?: string;
}

/** Metadata without the body. */
export interface ObjectHead {
  etag: string;
  size: number;
  contentType?: string;
}

/** What a put stores: bytes, text, or parts stored one after the other (no concatenation on the way). */
export type PutBody = Buffer | Uint8Array | string | readonly Uint8Array[];

/** A ranged read: how many bytes landed, the object's whole size, and its ETag. */
export interface RangeRead {
  bytes: number;
  size: number;
  etag: string;
}

export interface PutOptions {
  /** `'*'`: create only; throws `PreconditionFailedError` if the key exists (write-once cache segments). */
  ifNoneMatch?: '*';
  /** Replace only if the current ETag is this one (compare-and-swap on job.json); a missing key fails too. */
  ifMatch?: string;
  contentType?: string;
  /**
   * false: the local store skips the fsync, so the bytes survive a crash of the process but maybe
   * not a power failure. Only for objects that are verified when read and rebuilt when lost (cache
   * segments): syncing hundreds of MB stalls every other fsync on the disk (the frames', the job's).
   * S3 ignores it. Default true.
   */
  durable?: boolean;
  /** Object tags (S3 lifecycle rules match them, e.g. cache segments that expire); a local folder ignores them. */
  tags?: Record<string, string>;
}

/**
 * Port over a flat key/value object store (S3 or a local folder).
 * ETags are opaque strings: compare them only with `===` and hand them back as `ifMatch`.
 * A missing key reads as `null`, never as an error, so callers branch without try/catch.
 */
export interface ObjectStore {
  get(key: string): Promise<StoredObject | null>;
  head(key: string): Promise<ObjectHead | null>;
  put(key: string, body: PutBody, options?: PutOptions): Promise<{ etag: string }>;
  /**
   * Reads bytes from `start` straight into `into` (all of it, or up to the object's end), so a large
   * object is read in the pieces its reader needs, with no intermediate copy; null if missing.
   */
  readRange(key: string, start: number, into: Uint8Array): Promise<RangeRead | null>;
  /** Every key that starts with `prefix`, sorted by code unit (as S3 lists them). */
  list(prefix: string): Promise<string[]>;
  /** Deleting a missing key is not an error (S3 semantics). */
  delete(key: string): Promise<void>;
  /** A time-limited GET URL, where the backend can serve one (S3); absent on the local store. */
  presignGet?(key: string, expiresSec: number): Promise<string>;
  /**
   * A time-limited PUT URL for exactly `contentLength` bytes of `contentType`, where the backend can
   * take uploads itself (S3); absent on the local store, where the API takes the bytes.
   */
  presignPut?(key: string, opts: { expiresSec: number; contentLength: number; contentType: string }): Promise<string>;
}

const MAX_KEY_BYTES = 1024;

/** Total bytes of a put body. */
export function bodyLength(body: PutBody): number {
  if (typeof body === 'string') return Buffer.byteLength(body);
  if (Array.isArray(body)) return (body as readonly Uint8Array[]).reduce((n, p) => n + p.byteLength, 0);
  return (body as Uint8Array).byteLength;
}

/** The body as one Buffer (copies only when it comes in several parts). */
export function bodyBuffer(body: PutBody): Buffer {
  if (typeof body === 'string') return Buffer.from(body);
  if (Array.isArray(body)) return Buffer.concat(body as readonly Uint8Array[]);
  const b = body as Uint8Array;
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * Rejects keys that could escape a folder or that S3 and a filesystem would treat differently.
 * Segments starting with '.' are reserved so the local store can keep its staging area in the root.
 */
export function assertValidKey(key: string): void {
  if (key.length === 0) throw new InvalidKeyError(key, 'empty');
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new InvalidKeyError(key, 'longer than 1024 bytes');
  if (key.startsWith('/')) throw new InvalidKeyError(key, 'absolute');
  // eslint-disable-next-line no-control-regex
  if (/[\\\u0000-\u001f\u007f]/.test(key)) throw new InvalidKeyError(key, 'backslash or control character');
  for (const segment of key.split('/')) {
    if (segment === '') throw new InvalidKeyError(key, 'empty segment');
    if (segment.startsWith('.')) throw new InvalidKeyError(key, `segment ${JSON.stringify(segment)} starts with '.'`);
  }
}

/** Prefixes may end with '/' or be empty; otherwise the same rules as keys. */
export function assertValidPrefix(prefix: string): void {
  if (prefix === '') return;
  assertValidKey(prefix.endsWith('/') ? prefix.slice(0, -1) : prefix);
}
