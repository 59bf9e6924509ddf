import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from '../../../shared/store/s3-store.js';
import { startS3Shim, type S3Shim } from '../s3-shim.js';
import { describeObjectStoreContract } from './object-store.contract.js';

let shim: S3Shim;
let n = 0;
beforeAll(async () => { shim = await startS3Shim(); });
afterAll(() => shim.close());

// 5 MiB parts (the least S3 takes), so large objects are read in several ranged GETs.
const fresh = (): S3Store => new S3Store({ client: shim.client, bucket: shim.bucket, keyPrefix: `run-${++n}/`, partBytes: 5 * 2 ** 20 });

// The whole contract, conditional puts and their races included, through the real SDK and HTTP.
describeObjectStoreContract('S3Store on the conditional-write shim', async () => ({ store: fresh() }));

describe('S3Store on the conditional-write shim specifics', () => {
  it('a compare-and-swap race is decided by the server: the losers get 412 from it', async () => {
    const store = fresh();
    const base = await store.put('cas/x', 'base');
    const before = shim.counts.get('PutObject 412') ?? 0;
    await Promise.allSettled([1, 2, 3].map((i) => store.put('cas/x', `u${i}`, { ifMatch: base.etag })));
    expect((shim.counts.get('PutObject 412') ?? 0) - before).toBe(2);
  });
});
