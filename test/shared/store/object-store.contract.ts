import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidKeyError, PreconditionFailedError } from '../../../shared/store/errors.js';
import type { ObjectStore } from '../../../shared/store/object-store.js';

export interface StoreFixture {
  store: ObjectStore;
  cleanup?: () => Promise<void>;
}

/** Contract cases an adapter's backend may not emulate; each maps to the reason it is skipped. */
export interface StoreContractSkips {
  conditionalPut?: string;
}

/** The behaviour every `ObjectStore` adapter must have; run once per adapter. */
export function describeObjectStoreContract(
  name: string,
  makeStore: () => Promise<StoreFixture>,
  skips: StoreContractSkips = {},
): void {
  describe(`ObjectStore contract: ${name}`, () => {
    let fx: StoreFixture;
    let store: ObjectStore;
    beforeEach(async () => {
      fx = await makeStore();
      store = fx.store;
    });
    afterEach(async () => {
      await fx.cleanup?.();
    });

    it('reads back what was put, with the etag put returned', async () => {
      const { etag } = await store.put('jobs/t1/j1/job.json', '{"a":1}', { contentType: 'application/json' });
      const got = await store.get('jobs/t1/j1/job.json');
      expect(got?.body.toString()).toBe('{"a":1}');
      expect(got?.etag).toBe(etag);
      expect((await store.head('jobs/t1/j1/job.json'))?.etag).toBe(etag);
      expect((await store.head('jobs/t1/j1/job.json'))?.size).toBe(7);
    });

    it('reads a missing key as null', async () => {
      expect(await store.get('jobs/t1/nope/job.json')).toBeNull();
      expect(await store.head('jobs/t1/nope/job.json')).toBeNull();
    });

    it('stores a body given in parts as their concatenation', async () => {
      const parts = [Buffer.from('head|'), new Uint8Array([1, 2, 3]), Buffer.from('|tail')];
      await store.put('cache/parts.kv', parts);
      expect((await store.get('cache/parts.kv'))!.body.equals(Buffer.concat(parts))).toBe(true);
    });

    it('reads a byte range straight into a buffer, short at the end, null when missing', async () => {
      const body = Buffer.from(Array.from({ length: 300 }, (_, i) => i & 0xff));
      const { etag } = await store.put('cache/range.kv', body);
      const into = new Uint8Array(100);
      const got = await store.readRange('cache/range.kv', 50, into);
      expect(got).toMatchObject({ bytes: 100, size: 300, etag });
      expect(Buffer.from(into).equals(body.subarray(50, 150))).toBe(true);
      const tail = new Uint8Array(100);
      expect(await store.readRange('cache/range.kv', 250, tail)).toMatchObject({ bytes: 50, size: 300 });
      expect(Buffer.from(tail.subarray(0, 50)).equals(body.subarray(250))).toBe(true);
      expect(await store.readRange('cache/none.kv', 0, into)).toBeNull();
    });

    it('stores and reads back a large object (several parts) byte for byte, with a working etag', async () => {
      const big = Buffer.alloc(20 * 2 ** 20 + 12345);
      for (let i = 0; i < big.length; i += 4096) big[i] = (i >> 12) & 0xff;
      const { etag } = await store.put('cache/big.kv', [big.subarray(0, 1000), big.subarray(1000)]);
      const into = new Uint8Array(big.length);
      const got = await store.readRange('cache/big.kv', 0, into);
      expect(got).toMatchObject({ bytes: big.length, size: big.length, etag });
      expect(Buffer.from(into).equals(big)).toBe(true);
      expect((await store.head('cache/big.kv'))!.etag).toBe(etag);
      expect((await store.get('cache/big.kv'))!.etag).toBe(etag);
    });

    it('reads windows of a large object: across parts from the middle, short at the end, none past the end', async () => {
      const size = 12 * 2 ** 20 + 777;
      const big = Buffer.alloc(size);
      for (let i = 0; i < size; i++) big[i] = (i ^ (i >>> 8) ^ (i >>> 16)) & 0xff;
      const { etag } = await store.put('cache/window.kv', big);
      const mid = new Uint8Array(11 * 2 ** 20);
      expect(await store.readRange('cache/window.kv', 100, mid)).toEqual({ bytes: mid.length, size, etag });
      expect(Buffer.from(mid).equals(big.subarray(100, 100 + mid.length))).toBe(true);
      const small = new Uint8Array(10);
      expect(await store.readRange('cache/window.kv', 5 * 2 ** 20 - 3, small)).toEqual({ bytes: 10, size, etag });
      expect(Buffer.from(small).equals(big.subarray(5 * 2 ** 20 - 3, 5 * 2 ** 20 + 7))).toBe(true);
      // 10 MiB asked from 3 MiB before the end: 3 MiB land, the rest of the buffer is left as it was.
      const from = size - 3 * 2 ** 20;
      const tail = new Uint8Array(10 * 2 ** 20).fill(0xee);
      expect(await store.readRange('cache/window.kv', from, tail)).toEqual({ bytes: 3 * 2 ** 20, size, etag });
      expect(Buffer.from(tail.subarray(0, 3 * 2 ** 20)).equals(big.subarray(from))).toBe(true);
      expect(tail.subarray(3 * 2 ** 20).every((b) => b === 0xee)).toBe(true);
      for (const past of [size, size + 5]) {
        expect(await store.readRange('cache/window.kv', past, new Uint8Array(8))).toEqual({ bytes: 0, size, etag });
      }
    });

    it('reads from past the end of a small object as no bytes, with its size and etag', async () => {
      const { etag } = await store.put('cache/short.kv', 'abc');
      for (const past of [3, 40]) {
        const into = new Uint8Array(4).fill(9);
        expect(await store.readRange('cache/short.kv', past, into)).toEqual({ bytes: 0, size: 3, etag });
        expect([...into]).toEqual([9, 9, 9, 9]);
      }
    });

    it('reads a key under an object, or a key that names a folder of other keys, as missing', async () => {
      await store.put('nest/a', 'file');
      await store.put('nest/dir/b', 'x');
      for (const key of ['nest/a/b', 'nest/dir']) {
        expect(await store.get(key)).toBeNull();
        expect(await store.head(key)).toBeNull();
        expect(await store.readRange(key, 0, new Uint8Array(4))).toBeNull();
      }
      expect(await store.list('nest/a/')).toEqual([]);
      expect(await store.list('nest/')).toEqual(['nest/a', 'nest/dir/b']);
    });

    it('lists in code-unit order whatever the order of the puts, with a partial first segment', async () => {
      // 'q/c-d' sorts before 'q/c/1' ('-' < '/'), though a folder walk meets the folder c first.
      for (const k of ['q/m', 'q/b', 'q/Z', 'q/c/1', 'q/a_', 'qr', 'q/0', 'q/c-d', 'q/a-', 'r/x']) await store.put(k, k);
      const all = ['q/0', 'q/Z', 'q/a-', 'q/a_', 'q/b', 'q/c-d', 'q/c/1', 'q/m'];
      expect(await store.list('q')).toEqual([...all, 'qr']);
      expect(await store.list('qr')).toEqual(['qr']);
      expect(await store.list('q/')).toEqual(all);
      expect(await store.list('q/a')).toEqual(['q/a-', 'q/a_']);
      expect(await store.list('')).toEqual([...all, 'qr', 'r/x']);
    });

    it('stores binary bodies byte for byte', async () => {
      const bytes = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 31) % 256));
      await store.put('jobs/t1/j1/cache/000000.kv', bytes);
      expect((await store.get('jobs/t1/j1/cache/000000.kv'))?.body.equals(bytes)).toBe(true);
    });

    it('overwrites unconditionally and changes the etag', async () => {
      const first = await store.put('k/a', 'one');
      const second = await store.put('k/a', 'two');
      expect(second.etag).not.toBe(first.etag);
      expect((await store.get('k/a'))?.body.toString()).toBe('two');
    });

    it('lists keys under a prefix, sorted, including partial-segment prefixes', async () => {
      for (const k of ['jobs/t1/j2/job.json', 'jobs/t1/j1/frames/000001.png', 'jobs/t1/j1/job.json', 'jobs/t2/j1/job.json']) {
        await store.put(k, k);
      }
      expect(await store.list('jobs/t1/')).toEqual(['jobs/t1/j1/frames/000001.png', 'jobs/t1/j1/job.json', 'jobs/t1/j2/job.json']);
      expect(await store.list('jobs/t1/j1/fr')).toEqual(['jobs/t1/j1/frames/000001.png']);
      expect(await store.list('jobs/t9/')).toEqual([]);
    });

    it('deletes, and deleting a missing key is not an error', async () => {
      await store.put('k/del', 'x');
      await store.delete('k/del');
      expect(await store.get('k/del')).toBeNull();
      await expect(store.delete('k/del')).resolves.toBeUndefined();
    });

    it('rejects keys that could escape the root', async () => {
      for (const bad of ['', '/abs', 'a/../b', 'a//b', '..', 'a/./b', 'a\\b']) {
        await expect(store.put(bad, 'x')).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(store.get(bad)).rejects.toBeInstanceOf(InvalidKeyError);
      }
    });

    const itCond = skips.conditionalPut ? it.skip : it;
    const why = skips.conditionalPut ? ` [skipped: ${skips.conditionalPut}]` : '';

    itCond(`ifNoneMatch '*' creates once and then fails with PreconditionFailedError${why}`, async () => {
      await store.put('seg/000000.kv', 'first', { ifNoneMatch: '*' });
      const err = await store.put('seg/000000.kv', 'second', { ifNoneMatch: '*' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PreconditionFailedError);
      expect((err as PreconditionFailedError).key).toBe('seg/000000.kv');
      expect((await store.get('seg/000000.kv'))?.body.toString()).toBe('first');
    });

    itCond(`a lost condition names the key and the condition${why}`, async () => {
      await store.put('cond/a', 'x', { ifNoneMatch: '*' });
      const created = await store.put('cond/a', 'y', { ifNoneMatch: '*' }).catch((e: unknown) => e);
      expect(created).toBeInstanceOf(PreconditionFailedError);
      expect(created).toMatchObject({ key: 'cond/a' });
      expect((created as PreconditionFailedError).condition).toEqual({ ifNoneMatch: '*' });
      const swapped = await store.put('cond/a', 'y', { ifMatch: '"stale"' }).catch((e: unknown) => e);
      expect(swapped).toBeInstanceOf(PreconditionFailedError);
      expect((swapped as PreconditionFailedError).condition).toEqual({ ifMatch: '"stale"' });
    });

    itCond(`concurrent ifNoneMatch puts: exactly one wins${why}`, async () => {
      const results = await Promise.allSettled(
        Array.from({ length: 12 }, (_, i) => store.put('seg/race.kv', `writer-${i}`, { ifNoneMatch: '*' })),
      );
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r) => r.status === 'rejected');
      expect(won).toHaveLength(1);
      for (const r of lost) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(PreconditionFailedError);
      const winner = results.findIndex((r) => r.status === 'fulfilled');
      expect((await store.get('seg/race.kv'))?.body.toString()).toBe(`writer-${winner}`);
    });

    itCond(`ifMatch is a compare-and-swap: current etag wins, stale etag fails${why}`, async () => {
      const v1 = await store.put('jobs/t1/j1/job.json', 'v1');
      const v2 = await store.put('jobs/t1/j1/job.json', 'v2', { ifMatch: v1.etag });
      await expect(store.put('jobs/t1/j1/job.json', 'v2-lost', { ifMatch: v1.etag })).rejects.toBeInstanceOf(
        PreconditionFailedError,
      );
      expect((await store.get('jobs/t1/j1/job.json'))?.body.toString()).toBe('v2');
      await store.put('jobs/t1/j1/job.json', 'v3', { ifMatch: v2.etag });
      expect((await store.get('jobs/t1/j1/job.json'))?.body.toString()).toBe('v3');
    });

    itCond(`conditions hold for large objects too: ifNoneMatch creates once, ifMatch swaps on the current etag${why}`, async () => {
      const big = Buffer.alloc(20 * 2 ** 20, 7);
      const v1 = await store.put('cache/big-cas.kv', [big], { ifNoneMatch: '*' });
      await expect(store.put('cache/big-cas.kv', [big], { ifNoneMatch: '*' })).rejects.toBeInstanceOf(PreconditionFailedError);
      // New bytes for the swap: S3's ETag of a plain PUT is the content's MD5, so equal bytes keep it.
      const v2 = await store.put('cache/big-cas.kv', [Buffer.alloc(big.length, 8)], { ifMatch: v1.etag });
      expect(v2.etag).not.toBe(v1.etag);
      await expect(store.put('cache/big-cas.kv', [big], { ifMatch: v1.etag })).rejects.toBeInstanceOf(PreconditionFailedError);
    });

    itCond(`ifMatch on a missing key fails${why}`, async () => {
      await expect(store.put('missing/job.json', 'x', { ifMatch: '"0123"' })).rejects.toBeInstanceOf(PreconditionFailedError);
      expect(await store.get('missing/job.json')).toBeNull();
    });

    itCond(`concurrent CAS updates from one etag: exactly one wins${why}`, async () => {
      const base = await store.put('cas/job.json', 'base');
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) => store.put('cas/job.json', `update-${i}`, { ifMatch: base.etag })),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    });
  });
}
