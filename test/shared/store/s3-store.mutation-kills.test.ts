// S3Store against a mocked client: the exact commands it sends (part sizes, Range and If-Match
// headers, how many parts at once), and how it reads the answers and errors that the loopback
// servers (s3-shim, s3rver) never give: answers without an ETag, a server that ignores Range, an
// error reported by name only or by status only, presigned URLs (no server signs them).
import 'aws-sdk-client-mock-vitest/extend';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  type GetObjectCommandInput,
  type UploadPartCommandInput,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { PreconditionFailedError } from '../../../shared/store/errors.js';
import { S3Store, type S3StoreOptions } from '../../../shared/store/s3-store.js';

const MiB = 2 ** 20;
const s3 = mockClient(S3Client);
const client = new S3Client({ region: 'us-east-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } });
const make = (options: Partial<S3StoreOptions> = {}) => new S3Store({ client, bucket: 'b', ...options });

beforeEach(() => s3.reset());

function s3Error(name: string, status?: number): S3ServiceException {
  return new S3ServiceException({ name, $fault: 'client', $metadata: status === undefined ? {} : { httpStatusCode: status }, message: name });
}

/** A patterned object, so a byte read from the wrong offset shows. */
function pattern(size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i ^ (i >>> 8) ^ (i >>> 16)) & 0xff;
  return b;
}

/** GetObject over `obj` as S3 answers a ranged GET: 206 with Content-Range, in 1 MiB chunks; 416 past the end; 412 on a stale If-Match. */
function serve(obj: Buffer, etag: string) {
  return (input: GetObjectCommandInput) => {
    const [, a, b] = /^bytes=(\d+)-(\d+)$/.exec(input.Range ?? '')!;
    const first = Number(a);
    if (first >= obj.length) throw s3Error('InvalidRange', 416);
    if (input.IfMatch !== undefined && input.IfMatch !== etag) throw s3Error('PreconditionFailed', 412);
    const last = Math.min(obj.length - 1, Number(b));
    const body = obj.subarray(first, last + 1);
    const chunks = Array.from({ length: Math.ceil(body.length / MiB) }, (_, i) => body.subarray(i * MiB, (i + 1) * MiB));
    return { Body: Readable.from(chunks), ContentRange: `bytes ${first}-${last}/${obj.length}`, ContentLength: body.length, ETag: etag };
  };
}

const gets = () => s3.commandCalls(GetObjectCommand).map((c) => ({ Range: c.args[0].input.Range, IfMatch: c.args[0].input.IfMatch }));

/** `answer` made to take 20 ms, counting the most calls in flight at once (`most()`). */
function overlapping<I, O>(answer: (input: I) => O | Promise<O>): { fake: (input: I) => Promise<O>; most: () => number } {
  let inFlight = 0;
  let most = 0;
  return {
    fake: async (input: I) => {
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setTimeout(r, 20));
      inFlight--;
      return answer(input);
    },
    most: () => most,
  };
}

describe('S3Store ranged reads: the GETs sent', () => {
  it('one GET learns size and ETag, the other parts follow pinned to that ETag, from the given offset', async () => {
    const obj = pattern(13 * MiB + 10);
    s3.on(GetObjectCommand).callsFake(serve(obj, '"v1"'));
    const into = new Uint8Array(12 * MiB);
    expect(await make({ partBytes: 5 * MiB }).readRange('k', 1000, into)).toEqual({ bytes: 12 * MiB, size: obj.length, etag: '"v1"' });
    expect(Buffer.from(into).equals(obj.subarray(1000, 1000 + 12 * MiB))).toBe(true);
    const sent = gets();
    expect(sent[0]).toEqual({ Range: `bytes=1000-${1000 + 5 * MiB - 1}`, IfMatch: undefined });
    expect(sent.slice(1).sort((x, y) => x.Range!.localeCompare(y.Range!))).toEqual([
      { Range: `bytes=${1000 + 10 * MiB}-${1000 + 12 * MiB - 1}`, IfMatch: '"v1"' },
      { Range: `bytes=${1000 + 5 * MiB}-${1000 + 10 * MiB - 1}`, IfMatch: '"v1"' },
    ]);
  });

  it('sends no GET for parts past the end of a smaller object', async () => {
    const obj = pattern(6 * MiB);
    s3.on(GetObjectCommand).callsFake(serve(obj, '"v1"'));
    const into = new Uint8Array(15 * MiB);
    expect(await make({ partBytes: 5 * MiB }).readRange('k', 0, into)).toEqual({ bytes: 6 * MiB, size: 6 * MiB, etag: '"v1"' });
    expect(gets().map((g) => g.Range)).toEqual([`bytes=0-${5 * MiB - 1}`, `bytes=${5 * MiB}-${10 * MiB - 1}`]);
  });

  it('exact multiples of the part size: a GET per part of the buffer, none for a part starting at the end', async () => {
    s3.on(GetObjectCommand).callsFake(serve(pattern(12 * MiB), '"v1"'));
    await make({ partBytes: 5 * MiB }).readRange('k', 0, new Uint8Array(10 * MiB));
    expect(gets()).toHaveLength(2);
    s3.reset();
    s3.on(GetObjectCommand).callsFake(serve(pattern(10 * MiB), '"v1"'));
    expect(await make({ partBytes: 5 * MiB }).readRange('k', 0, new Uint8Array(15 * MiB))).toMatchObject({ bytes: 10 * MiB, size: 10 * MiB });
    expect(gets()).toHaveLength(2);
    expect(s3).not.toHaveReceivedCommand(HeadObjectCommand);
  });

  it('by default reads in 16 MiB parts, 4 at once', async () => {
    const obj = pattern(80 * MiB);
    const reads = overlapping(serve(obj, '"v1"'));
    s3.on(GetObjectCommand).callsFake(reads.fake);
    const into = new Uint8Array(80 * MiB);
    expect((await make().readRange('k', 0, into))?.bytes).toBe(80 * MiB);
    expect(gets().map((g) => g.Range)).toContain(`bytes=0-${16 * MiB - 1}`);
    expect(gets()).toHaveLength(5);
    expect(reads.most()).toBe(4); // the first part alone, then the other four together
  });

  it('reads at most `concurrency` parts at once after the first', async () => {
    const obj = pattern(30 * MiB);
    const reads = overlapping(serve(obj, '"v1"'));
    s3.on(GetObjectCommand).callsFake(reads.fake);
    const into = new Uint8Array(30 * MiB);
    expect((await make({ partBytes: 5 * MiB, concurrency: 2 }).readRange('k', 0, into))?.bytes).toBe(30 * MiB);
    expect(Buffer.from(into).equals(obj)).toBe(true);
    expect(gets()).toHaveLength(6);
    expect(reads.most()).toBe(2);
  });

  it('a part asked below 5 MiB is read as 5 MiB (the least S3 takes for an upload part)', async () => {
    const obj = pattern(7 * MiB);
    s3.on(GetObjectCommand).callsFake(serve(obj, '"v1"'));
    await make({ partBytes: MiB }).readRange('k', 0, new Uint8Array(7 * MiB));
    expect(gets().map((g) => g.Range)).toEqual([`bytes=0-${5 * MiB - 1}`, `bytes=${5 * MiB}-${7 * MiB - 1}`]);
  });

  it('an object deleted during the read fails it; one replaced fails on its If-Match', async () => {
    const obj = pattern(11 * MiB);
    const answer = serve(obj, '"v1"');
    s3.on(GetObjectCommand).callsFakeOnce(answer).rejects(s3Error('NoSuchKey', 404));
    await expect(make({ partBytes: 5 * MiB }).readRange('seg', 0, new Uint8Array(11 * MiB))).rejects.toThrow('seg disappeared during a ranged read');
    s3.reset();
    s3.on(GetObjectCommand).callsFakeOnce(answer).callsFake(serve(obj, '"v2"'));
    await expect(make({ partBytes: 5 * MiB }).readRange('seg', 0, new Uint8Array(11 * MiB))).rejects.toMatchObject({ name: 'PreconditionFailed' });
  });

  it('a server that ignores Range: only what fits lands, the size comes from Content-Length', async () => {
    const obj = pattern(3000);
    s3.on(GetObjectCommand).callsFake(() => ({ Body: Readable.from([obj.subarray(0, 1500), obj.subarray(1500)]), ContentLength: 3000, ETag: '"w"' }));
    const into = new Uint8Array(2000);
    expect(await make().readRange('k', 0, into)).toEqual({ bytes: 2000, size: 3000, etag: '"w"' });
    expect(Buffer.from(into).equals(obj.subarray(0, 2000))).toBe(true);
  });

  it('an answer without a body or an ETag reads as no bytes and an empty etag', async () => {
    s3.on(GetObjectCommand).resolves({ ContentRange: 'bytes 0-9/10' });
    expect(await make().readRange('k', 0, new Uint8Array(10))).toEqual({ bytes: 0, size: 10, etag: '' });
  });

  it('past the end, reported as 416 or as InvalidRange: no bytes, the size and ETag from a HEAD', async () => {
    s3.on(HeadObjectCommand).resolves({ ContentLength: 10, ETag: '"h"' });
    for (const err of [s3Error('RequestedRangeNotSatisfiable', 416), s3Error('InvalidRange')]) {
      s3.on(GetObjectCommand).rejects(err);
      expect(await make().readRange('k', 50, new Uint8Array(4))).toEqual({ bytes: 0, size: 10, etag: '"h"' });
    }
    s3.on(HeadObjectCommand).rejects(s3Error('NotFound', 404));
    expect(await make().readRange('k', 50, new Uint8Array(4))).toBeNull();
  });

  it('other errors of a ranged GET pass through', async () => {
    s3.on(GetObjectCommand).rejects(s3Error('InternalError', 500));
    await expect(make().readRange('k', 0, new Uint8Array(4))).rejects.toMatchObject({ name: 'InternalError' });
  });
});

describe('S3Store whole reads', () => {
  it('an answer without an ETag reads as an empty etag (get and head)', async () => {
    s3.on(GetObjectCommand).resolves({ Body: { transformToByteArray: async () => new Uint8Array([7]) } as never });
    s3.on(HeadObjectCommand).resolves({ ContentLength: 1 });
    expect(await make().get('k')).toEqual({ body: Buffer.from([7]), etag: '', contentType: undefined });
    expect(await make().head('k')).toEqual({ etag: '', size: 1, contentType: undefined });
  });

  it('a HEAD that fails otherwise than not found throws', async () => {
    s3.on(HeadObjectCommand).rejects(s3Error('AccessDenied', 403));
    await expect(make().head('k')).rejects.toMatchObject({ name: 'AccessDenied' });
  });

  it('not found is told by the name NoSuchKey or NotFound, or by status 404, each alone', async () => {
    for (const err of [s3Error('NoSuchKey'), s3Error('NotFound'), s3Error('UnknownError', 404)]) {
      s3.on(GetObjectCommand).rejects(err);
      s3.on(HeadObjectCommand).rejects(err);
      expect(await make().get('k')).toBeNull();
      expect(await make().head('k')).toBeNull();
    }
  });
});

describe('S3Store conditional writes: which errors mean the condition lost', () => {
  const lost = async (err: Error, options: { ifNoneMatch?: '*'; ifMatch?: string }) => {
    s3.reset();
    s3.on(PutObjectCommand).rejects(err);
    const got = await make().put('k', 'x', options).catch((e: unknown) => e);
    return got instanceof PreconditionFailedError;
  };

  it('412 or the name PreconditionFailed or ConditionalRequestConflict, each alone', async () => {
    expect(await lost(s3Error('UnknownError', 412), { ifNoneMatch: '*' })).toBe(true);
    expect(await lost(s3Error('PreconditionFailed'), { ifNoneMatch: '*' })).toBe(true);
    expect(await lost(s3Error('ConditionalRequestConflict'), { ifMatch: '"e"' })).toBe(true);
  });

  it('409 when the put had a condition (either one), and only then', async () => {
    expect(await lost(s3Error('OperationAborted', 409), { ifNoneMatch: '*' })).toBe(true);
    expect(await lost(s3Error('OperationAborted', 409), { ifMatch: '"e"' })).toBe(true);
    expect(await lost(s3Error('OperationAborted', 409), {})).toBe(false);
  });

  it('404 only for If-Match (nothing to compare against): an upload gone under If-None-Match passes through', async () => {
    s3.on(CreateMultipartUploadCommand).resolves({ UploadId: 'u' });
    s3.on(UploadPartCommand).resolves({ ETag: '"p"' });
    s3.on(AbortMultipartUploadCommand).resolves({});
    s3.on(CompleteMultipartUploadCommand).rejects(s3Error('NoSuchUpload', 404));
    const err = await make({ multipartThreshold: 6 * MiB, partBytes: 5 * MiB }).put('k', Buffer.alloc(6 * MiB), { ifNoneMatch: '*' }).catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(PreconditionFailedError);
    expect(err).toMatchObject({ name: 'NoSuchUpload' });
  });

  it('a lost multipart condition names it', async () => {
    s3.on(CreateMultipartUploadCommand).resolves({ UploadId: 'u' });
    s3.on(UploadPartCommand).resolves({ ETag: '"p"' });
    s3.on(AbortMultipartUploadCommand).resolves({});
    s3.on(CompleteMultipartUploadCommand).rejects(s3Error('PreconditionFailed', 412));
    const err = await make({ multipartThreshold: 6 * MiB, partBytes: 5 * MiB }).put('k', Buffer.alloc(6 * MiB), { ifMatch: '"e"' }).catch((e: unknown) => e);
    expect((err as PreconditionFailedError).condition).toEqual({ ifMatch: '"e"' });
  });

  it('a put answered without an ETag returns an empty etag', async () => {
    s3.on(PutObjectCommand).resolves({});
    expect(await make().put('k', 'x')).toEqual({ etag: '' });
    // No key prefix by default: the key goes as given.
    expect(s3).toHaveReceivedCommandWith(PutObjectCommand, { Bucket: 'b', Key: 'k' });
  });
});

describe('S3Store multipart uploads: the parts sent', () => {
  const uploaded = () =>
    s3.commandCalls(UploadPartCommand)
      .map((c) => c.args[0].input)
      .sort((x, y) => x.PartNumber! - y.PartNumber!)
      .map((i) => i.Body as Uint8Array);

  beforeEach(() => {
    s3.on(CreateMultipartUploadCommand).resolves({ UploadId: 'u' });
    s3.on(UploadPartCommand).callsFake((input) => ({ ETag: `"p${input.PartNumber}"` }));
    s3.on(CompleteMultipartUploadCommand).resolves({ ETag: '"all"' });
    s3.on(AbortMultipartUploadCommand).resolves({});
  });

  it('by default: a plain PUT below 64 MiB, parts of 16 MiB from 64 MiB on', async () => {
    s3.on(PutObjectCommand).resolves({ ETag: '"one"' });
    const body = Buffer.alloc(64 * MiB, 1);
    expect(await make().put('k', body.subarray(1))).toEqual({ etag: '"one"' });
    expect(s3).not.toHaveReceivedCommand(CreateMultipartUploadCommand);
    expect(await make().put('k', body)).toEqual({ etag: '"all"' });
    expect(uploaded().map((p) => p.byteLength)).toEqual([16 * MiB, 16 * MiB, 16 * MiB, 16 * MiB]);
  });

  it('a body of exactly the threshold goes up in parts; parts below 5 MiB are raised to 5 MiB', async () => {
    const body = pattern(12 * MiB);
    await make({ multipartThreshold: 12 * MiB, partBytes: MiB }).put('k', body);
    expect(uploaded().map((p) => p.byteLength)).toEqual([5 * MiB, 5 * MiB, 2 * MiB]);
    expect(Buffer.concat(uploaded()).equals(body)).toBe(true);
  });

  it('a text body of the threshold or more goes up in parts too', async () => {
    const text = 'abcdefgh'.repeat((6 * MiB) / 8);
    await make({ multipartThreshold: 6 * MiB, partBytes: 5 * MiB }).put('k', text);
    expect(Buffer.concat(uploaded()).toString()).toBe(text);
    expect(s3).toHaveReceivedCommandWith(CompleteMultipartUploadCommand, {
      MultipartUpload: { Parts: [{ ETag: '"p1"', PartNumber: 1 }, { ETag: '"p2"', PartNumber: 2 }] },
    });
  });

  it('a part inside one piece of the body goes as a view of it, no copy; only a straddling part is copied', async () => {
    const a = pattern(5 * MiB);
    const b = pattern(7 * MiB);
    await make({ multipartThreshold: 6 * MiB, partBytes: 5 * MiB }).put('k', [a, b]);
    const [p1, p2, p3] = uploaded();
    expect(p1.buffer).toBe(a.buffer);
    expect(p2.buffer).toBe(b.buffer);
    expect(p3.buffer).toBe(b.buffer);
    expect(Buffer.concat([p1, p2, p3]).equals(Buffer.concat([a, b]))).toBe(true);
    s3.resetHistory();
    const whole = pattern(11 * MiB);
    await make({ multipartThreshold: 6 * MiB, partBytes: 5 * MiB }).put('k', whole);
    expect(uploaded().every((p) => p.buffer === whole.buffer)).toBe(true);
  });

  it('uploads at most `concurrency` parts at once, and at least one', async () => {
    for (const [concurrency, expected] of [[2, 2], [0, 1]] as const) {
      s3.resetHistory();
      const uploads = overlapping((input: UploadPartCommandInput) => ({ ETag: `"p${input.PartNumber}"` }));
      s3.on(UploadPartCommand).callsFake(uploads.fake);
      await make({ multipartThreshold: 6 * MiB, partBytes: 5 * MiB, concurrency }).put('k', Buffer.alloc(20 * MiB));
      expect(uploaded()).toHaveLength(4);
      expect(uploads.most()).toBe(expected);
    }
  });

  it('the completion lists exactly the parts uploaded (none for an empty body under a zero threshold)', async () => {
    await make({ multipartThreshold: 0 }).put('k', '');
    expect(uploaded()).toEqual([]);
    expect(s3).toHaveReceivedCommandWith(CompleteMultipartUploadCommand, { MultipartUpload: { Parts: [] } });
  });

  it('parts answered without an ETag are completed with an empty one; so is the upload', async () => {
    s3.on(UploadPartCommand).resolves({});
    s3.on(CompleteMultipartUploadCommand).resolves({});
    expect(await make({ multipartThreshold: 6 * MiB, partBytes: 5 * MiB }).put('k', Buffer.alloc(6 * MiB))).toEqual({ etag: '' });
    expect(s3).toHaveReceivedCommandWith(CompleteMultipartUploadCommand, {
      MultipartUpload: { Parts: [{ ETag: '', PartNumber: 1 }, { ETag: '', PartNumber: 2 }] },
    });
  });
});

describe('S3Store presigned URLs', () => {
  it('a GET URL lives as long as asked', async () => {
    const url = new URL(await make({ keyPrefix: 'env/' }).presignGet('jobs/v.mp4', 60));
    expect(url.pathname).toMatch(/\/env\/jobs\/v\.mp4$/);
    expect(url.searchParams.get('X-Amz-Expires')).toBe('60');
  });

  it('a PUT URL signs the length and the type, and lives as long as asked', async () => {
    const url = new URL(await make().presignPut('up/in.png', { expiresSec: 120, contentLength: 42, contentType: 'image/png' }));
    expect(url.searchParams.get('X-Amz-Expires')).toBe('120');
    expect(url.searchParams.get('X-Amz-SignedHeaders')).toBe('content-length;content-type;host');
  });
});
