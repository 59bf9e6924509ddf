import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { PreconditionFailedError } from './errors.js';
import {
  assertValidKey,
  assertValidPrefix,
  type ObjectHead,
  type ObjectStore,
  type PutOptions,
  type StoredObject,
} from './object-store.js';

export interface S3StoreOptions {
  /** Created once by the caller and injected, so tests can hand in a mock or an emulator endpoint. */
  client: S3Client;
  bucket: string;
  /** Prepended to every key (e.g. `env/dev/`); hidden from callers, stripped from `list` results. */
  keyPrefix?: string;
}

/** `ObjectStore` over S3; conditional puts use S3's native `If-None-Match` / `If-Match` on PutObject. */
export class S3Store implements ObjectStore {
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly keyPrefix: string;

  constructor({ client, bucket, keyPrefix = '' }: S3StoreOptions) {
    this.client = client;
    this.bucket = bucket;
    this.keyPrefix = keyPrefix;
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

  async put(key: string, body: Buffer | Uint8Array | string, options: PutOptions = {}): Promise<{ etag: string }> {
    const { ifNoneMatch, ifMatch, contentType, tags } = options;
    try {
      const out = await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.full(key),
          Body: body,
          ContentType: contentType,
          IfNoneMatch: ifNoneMatch,
          IfMatch: ifMatch,
          Tagging: tags ? new URLSearchParams(tags).toString() : undefined,
        }),
      );
      return { etag: out.ETag ?? '' };
    } catch (err) {
      // 412: the condition did not hold. 409 ConditionalRequestConflict: a concurrent conditional
      // write to the same key won the race. 404 with If-Match: there is nothing to compare against.
      const status = httpStatus(err);
      const lost =
        status === 412 ||
        errorName(err) === 'PreconditionFailed' ||
        errorName(err) === 'ConditionalRequestConflict' ||
        (status === 409 && (ifNoneMatch !== undefined || ifMatch !== undefined)) ||
        (ifMatch !== undefined && isNotFound(err));
      if (lost) throw new PreconditionFailedError(key, { ifNoneMatch, ifMatch }, { cause: err });
      throw err;
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
    // S3 already lists in UTF-8 byte order; sorting keeps the contract when pages or emulators disagree.
    return keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.full(key) }));
  }

  presignGet(key: string, expiresSec: number): Promise<string> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: this.full(key) }), {
      expiresIn: expiresSec,
    });
  }

  private full(key: string): string {
    assertValidKey(key);
    return this.keyPrefix + key;
  }
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
