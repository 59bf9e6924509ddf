import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from '../../../shared/store/s3-store.js';
import { startS3, type S3Emulator } from '../emulators.js';
import { describeObjectStoreContract } from './object-store.contract.js';

let s3: S3Emulator;
let n = 0;
beforeAll(async () => {
  s3 = await startS3();
});
afterAll(() => s3.close());

// A fresh key prefix per test instead of a fresh bucket: cheap isolation on one emulator.
// Small parts, so the large-object cases go through multipart uploads and parallel ranged reads.
const fresh = (): S3Store => new S3Store({ client: s3.client, bucket: s3.bucket, keyPrefix: `run-${++n}/`, multipartThreshold: 6 * 2 ** 20, partBytes: 5 * 2 ** 20 });

describeObjectStoreContract('S3Store on s3rver', async () => ({ store: fresh() }), {
  conditionalPut:
    's3rver 3.7 ignores If-None-Match/If-Match on PutObject (it only honours If-None-Match on GET); ' +
    'the error mapping is covered with aws-sdk-client-mock in s3-store.mock.test.ts',
});

describe('S3Store on s3rver specifics', () => {
  // s3rver 3.7 builds continuation tokens with the DES cipher, which Node 20's OpenSSL 3 no longer
  // provides: any truncated listing answers InternalError. Pagination is covered in s3-store.mock.test.ts.
  it.skip('lists across pages (more keys than MaxKeys of one page) [skipped: s3rver uses DES, absent in OpenSSL 3]', async () => {
    const store = fresh();
    // s3rver pages at 1000 keys like S3; 1005 keys force one continuation token.
    const keys = Array.from({ length: 1005 }, (_, i) => `p/${String(i).padStart(5, '0')}`);
    for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((k) => store.put(k, 'x')));
    expect(await store.list('p/')).toEqual(keys);
  });

  it('presigns a GET url that fetches the object', async () => {
    const store = fresh();
    await store.put('jobs/t/j/output/video.mp4', 'mp4-bytes', { contentType: 'video/mp4' });
    const url = await store.presignGet('jobs/t/j/output/video.mp4', 60);
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('mp4-bytes');
  });
});
