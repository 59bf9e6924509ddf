// LocalStore behaviour the shared contract cannot state: its ETag scheme, its errors from the
// filesystem, what its listing leaves out of the folder, its lock files, its file handles.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs, readdirSync, readlinkSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PreconditionFailedError, StoreError } from '../../../shared/store/errors.js';
import { LARGE_OBJECT, LocalStore } from '../../../shared/store/local-store.js';

const dirs: string[] = [];
async function fresh(options: Partial<ConstructorParameters<typeof LocalStore>[0]> = {}): Promise<{ root: string; store: LocalStore }> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'local-store-kills-'));
  dirs.push(root);
  return { root, store: new LocalStore({ root, ...options }) };
}
afterAll(() => Promise.all(dirs.map((d) => fs.rm(d, { recursive: true, force: true }))));

/** A path segment longer than any filesystem name (255 bytes), inside the 1024-byte key limit. */
const LONG = 'n'.repeat(300);

describe('LocalStore ETags', () => {
  it('a small object: the quoted SHA-256 of its bytes, the same for the same bytes', async () => {
    const { store } = await fresh();
    const sha = `"${createHash('sha256').update('state').digest('hex')}"`;
    expect(await store.put('a/one', 'state')).toEqual({ etag: sha });
    expect((await store.put('a/two', 'state')).etag).toBe(sha);
    expect((await store.head('a/one'))?.etag).toBe(sha);
  });

  it('an object of exactly LARGE_OBJECT bytes is large: its etag names the file, so equal bytes rewritten get a new one', async () => {
    const { store } = await fresh();
    const bytes = Buffer.alloc(LARGE_OBJECT, 3);
    const first = await store.put('seg/a.kv', bytes);
    expect(first.etag).toMatch(/^"L-100000-[0-9a-f]+-[0-9a-f]+"$/);
    const second = await store.put('seg/a.kv', bytes);
    expect(second.etag).not.toBe(first.etag);
    expect((await store.head('seg/a.kv'))?.etag).toBe(second.etag);
    expect((await store.readRange('seg/a.kv', 0, new Uint8Array(4)))?.etag).toBe(second.etag);
    // One byte less is small: hashed, so equal bytes keep their etag.
    const small = Buffer.alloc(LARGE_OBJECT - 1, 3);
    const s1 = await store.put('seg/b.kv', small);
    expect((await store.put('seg/b.kv', small)).etag).toBe(s1.etag);
    expect((await store.readRange('seg/b.kv', 0, new Uint8Array(4)))?.etag).toBe(s1.etag);
  });
});

describe('LocalStore errors from the filesystem', () => {
  it('a key under an existing object cannot be written: StoreError naming the key, with the cause', async () => {
    const { store } = await fresh();
    await store.put('a', 'file');
    const err = await store.put('a/b', 'x').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect(err).not.toBeInstanceOf(PreconditionFailedError);
    expect((err as Error).message).toBe('cannot create folder for a/b');
    expect(((err as Error).cause as NodeJS.ErrnoException).code).toMatch(/^(EEXIST|ENOTDIR)$/);
  });

  it('a name the filesystem refuses fails as such: never read as missing, never a lost condition', async () => {
    const { store } = await fresh();
    const key = `k/${LONG}`;
    const created = await store.put(key, 'x', { ifNoneMatch: '*' }).catch((e: unknown) => e);
    expect(created).not.toBeInstanceOf(PreconditionFailedError);
    expect(created).toMatchObject({ code: 'ENAMETOOLONG' });
    await expect(store.get(key)).rejects.toMatchObject({ code: 'ENAMETOOLONG' });
    await expect(store.list(`${LONG}/`)).rejects.toMatchObject({ code: 'ENAMETOOLONG' });
  });
});

describe('LocalStore listing', () => {
  it('leaves out dotfiles and anything that is not a regular file', async () => {
    const { root, store } = await fresh();
    await store.put('d/obj', 'x');
    await fs.writeFile(path.join(root, '.DS_Store'), 'finder');
    await fs.writeFile(path.join(root, 'd', '.hidden'), 'x');
    execFileSync('mkfifo', [path.join(root, 'd', 'pipe')]);
    expect(await store.list('')).toEqual(['d/obj']);
    expect(await store.list('d/')).toEqual(['d/obj']);
  });
});

describe('LocalStore locks', () => {
  it('a put waits for the key lock another live process holds (.staging/locks/<32 hex of sha256(key)>.lock)', async () => {
    const { root, store } = await fresh({ lock: { timeoutMs: 200 } });
    await store.put('jobs/t/j/job.json', 'v1');
    const lock = path.join(root, '.staging', 'locks', `${createHash('sha256').update('jobs/t/j/job.json').digest('hex').slice(0, 32)}.lock`);
    // PID 1 is alive and is not this process: a holder that must be waited for, not broken.
    await fs.writeFile(lock, '1 0123456789abcdef');
    await expect(store.put('jobs/t/j/job.json', 'v2')).rejects.toThrow(/timed out waiting for lock/);
    await expect(store.delete('jobs/t/j/job.json')).rejects.toThrow(/timed out waiting for lock/);
    expect((await store.get('jobs/t/j/job.json'))?.body.toString()).toBe('v1');
    await fs.rm(lock);
    await store.put('jobs/t/j/job.json', 'v2');
    expect((await store.get('jobs/t/j/job.json'))?.body.toString()).toBe('v2');
  });
});

describe('LocalStore file handles', () => {
  /** Files under `root` this process holds open right now. */
  const openUnder = (root: string) =>
    readdirSync('/proc/self/fd').flatMap((fd) => {
      try {
        const target = readlinkSync(`/proc/self/fd/${fd}`);
        return target.startsWith(root) ? [target] : [];
      } catch {
        return []; // closed meanwhile (the readdir's own fd)
      }
    });

  it('closes every file it opens to read (get, head, readRange, small and large)', async () => {
    const { root, store } = await fresh();
    await store.put('s', 'small');
    await store.put('l', Buffer.alloc(LARGE_OBJECT + 10, 1));
    const reads: [string, () => Promise<unknown>][] = [
      ['get', () => store.get('s')],
      ['head small', () => store.head('s')],
      ['head large', () => store.head('l')],
      ['readRange small', () => store.readRange('s', 1, new Uint8Array(2))],
      ['readRange large', () => store.readRange('l', 5, new Uint8Array(16))],
    ];
    for (const [name, read] of reads) {
      await read();
      expect(openUnder(root), name).toEqual([]);
    }
  });
});
