import 'aws-sdk-client-mock-vitest/extend';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  NotFound,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { PreconditionFailedError } from '../../../shared/store/errors.js';
import { S3Store } from '../../../shared/store/s3-store.js';

const s3 = mockClient(S3Client);
const store = new S3Store({ client: new S3Client({ region: 'us-east-1' }), bucket: 'b', keyPrefix: 'pre/' });

function s3Error(name: string, status: number): S3ServiceException {
  return new S3ServiceException({ name, $fault: 'client', $metadata: { httpStatusCode: status }, message: name });
}

beforeEach(() => s3.reset());

describe('S3Store conditional puts (mocked S3)', () => {
  it('sends object tags as the Tagging header (lifecycle rules match them)', async () => {
    s3.on(PutObjectCommand).resolves({ ETag: '"t"' });
    await store.put('cache/000001.kv', Buffer.from('x'), { ifNoneMatch: '*', tags: { 'ca2vdm-cache': 'expire' } });
    expect(s3).toHaveReceivedCommandWith(PutObjectCommand, { Tagging: 'ca2vdm-cache=expire', IfNoneMatch: '*' });
  });

  it('sends If-None-Match and maps 412 PreconditionFailed to PreconditionFailedError', async () => {
    s3.on(PutObjectCommand).rejects(s3Error('PreconditionFailed', 412));
    const err = await store.put('cache/000001.kv', 'x', { ifNoneMatch: '*' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PreconditionFailedError);
    expect((err as PreconditionFailedError).cause).toBeInstanceOf(S3ServiceException);
    expect(s3).toHaveReceivedCommandWith(PutObjectCommand, { Bucket: 'b', Key: 'pre/cache/000001.kv', IfNoneMatch: '*' });
  });

  it('maps 409 ConditionalRequestConflict (a concurrent conditional write) to PreconditionFailedError', async () => {
    s3.on(PutObjectCommand).rejects(s3Error('ConditionalRequestConflict', 409));
    await expect(store.put('job.json', 'x', { ifMatch: '"e1"' })).rejects.toBeInstanceOf(PreconditionFailedError);
  });

  it('maps 404 NoSuchKey on an If-Match put to PreconditionFailedError', async () => {
    s3.on(PutObjectCommand).rejects(new NoSuchKey({ $metadata: { httpStatusCode: 404 }, message: 'gone' }));
    await expect(store.put('job.json', 'x', { ifMatch: '"e1"' })).rejects.toBeInstanceOf(PreconditionFailedError);
  });

  it('sends If-Match with the etag as given and returns the new etag', async () => {
    s3.on(PutObjectCommand).resolves({ ETag: '"e2"' });
    await expect(store.put('job.json', '{}', { ifMatch: '"e1"', contentType: 'application/json' })).resolves.toEqual({
      etag: '"e2"',
    });
    expect(s3).toHaveReceivedCommandWith(PutObjectCommand, { IfMatch: '"e1"', ContentType: 'application/json' });
  });

  it('passes other errors through unchanged', async () => {
    s3.on(PutObjectCommand).rejects(s3Error('AccessDenied', 403));
    const err = await store.put('k', 'x', { ifNoneMatch: '*' }).catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(PreconditionFailedError);
    expect((err as Error).name).toBe('AccessDenied');
  });
});

describe('S3Store reads and listing (mocked S3)', () => {
  it('reads NoSuchKey as null and NotFound on HEAD as null', async () => {
    s3.on(GetObjectCommand).rejects(new NoSuchKey({ $metadata: { httpStatusCode: 404 }, message: 'no' }));
    s3.on(HeadObjectCommand).rejects(new NotFound({ $metadata: { httpStatusCode: 404 }, message: 'no' }));
    expect(await store.get('k')).toBeNull();
    expect(await store.head('k')).toBeNull();
  });

  it('does not read NoSuchBucket as a missing object', async () => {
    s3.on(GetObjectCommand).rejects(s3Error('NoSuchBucket', 404));
    await expect(store.get('k')).rejects.toMatchObject({ name: 'NoSuchBucket' });
  });

  it('follows continuation tokens, strips the key prefix and sorts', async () => {
    s3.on(ListObjectsV2Command, { ContinuationToken: undefined })
      .resolves({ Contents: [{ Key: 'pre/a/2' }, { Key: 'pre/a/3' }], IsTruncated: true, NextContinuationToken: 't1' })
      .on(ListObjectsV2Command, { ContinuationToken: 't1' })
      .resolves({ Contents: [{ Key: 'pre/a/1' }], IsTruncated: true, NextContinuationToken: 't2' })
      .on(ListObjectsV2Command, { ContinuationToken: 't2' })
      .resolves({ Contents: [], IsTruncated: false });
    expect(await store.list('a/')).toEqual(['a/1', 'a/2', 'a/3']);
    expect(s3).toHaveReceivedCommandTimes(ListObjectsV2Command, 3);
    expect(s3).toHaveReceivedNthCommandWith(ListObjectsV2Command, 1, { Bucket: 'b', Prefix: 'pre/a/' });
  });
});

describe('S3Store multipart uploads (mocked S3)', () => {
  const big = new S3Store({ client: new S3Client({ region: 'us-east-1' }), bucket: 'b', multipartThreshold: 6 * 2 ** 20, partBytes: 5 * 2 ** 20 });
  const body = [Buffer.alloc(1000, 1), Buffer.alloc(12 * 2 ** 20, 2)];

  it('uploads a large body in parts and puts the condition on the completion', async () => {
    s3.on(CreateMultipartUploadCommand).resolves({ UploadId: 'u1' });
    s3.on(UploadPartCommand).callsFake((input) => ({ ETag: `"p${input.PartNumber}"` }));
    s3.on(CompleteMultipartUploadCommand).resolves({ ETag: '"done-3"' });
    expect(await big.put('cache/000001.kv', body, { ifNoneMatch: '*', tags: { 'ca2vdm-cache': 'expire' } })).toEqual({ etag: '"done-3"' });
    expect(s3).toHaveReceivedCommandWith(CreateMultipartUploadCommand, { Key: 'cache/000001.kv', Tagging: 'ca2vdm-cache=expire' });
    expect(s3).toHaveReceivedCommandTimes(UploadPartCommand, 3);
    const sizes = s3.commandCalls(UploadPartCommand).map((c) => (c.args[0].input.Body as Uint8Array).byteLength).sort((a, b) => a - b);
    expect(sizes).toEqual([1000 + 12 * 2 ** 20 - 10 * 2 ** 20, 5 * 2 ** 20, 5 * 2 ** 20]);
    expect(s3).toHaveReceivedCommandWith(CompleteMultipartUploadCommand, {
      UploadId: 'u1', IfNoneMatch: '*',
      MultipartUpload: { Parts: [{ ETag: '"p1"', PartNumber: 1 }, { ETag: '"p2"', PartNumber: 2 }, { ETag: '"p3"', PartNumber: 3 }] },
    });
    expect(s3).not.toHaveReceivedCommand(PutObjectCommand);
  });

  it('maps a failed completion condition to PreconditionFailedError and aborts the upload', async () => {
    s3.on(CreateMultipartUploadCommand).resolves({ UploadId: 'u2' });
    s3.on(AbortMultipartUploadCommand).resolves({});
    s3.on(UploadPartCommand).resolves({ ETag: '"p"' });
    s3.on(CompleteMultipartUploadCommand).rejects(s3Error('PreconditionFailed', 412));
    await expect(big.put('cache/000001.kv', body, { ifNoneMatch: '*' })).rejects.toBeInstanceOf(PreconditionFailedError);
    expect(s3).toHaveReceivedCommandWith(AbortMultipartUploadCommand, { UploadId: 'u2' });
  });

  it('aborts the upload when a part fails, and passes the error on', async () => {
    s3.on(CreateMultipartUploadCommand).resolves({ UploadId: 'u3' });
    s3.on(AbortMultipartUploadCommand).resolves({});
    s3.on(UploadPartCommand).rejects(s3Error('InternalError', 500));
    await expect(big.put('cache/000001.kv', body)).rejects.toThrow(/InternalError/);
    expect(s3).toHaveReceivedCommandWith(AbortMultipartUploadCommand, { UploadId: 'u3' });
    expect(s3).not.toHaveReceivedCommand(CompleteMultipartUploadCommand);
  });
});
