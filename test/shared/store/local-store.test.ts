import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalStore } from '../../../shared/store/local-store.js';
import { describeObjectStoreContract } from './object-store.contract.js';

const run = promisify(execFile);
const racer = fileURLToPath(new URL('../fixtures/race-put.ts', import.meta.url));

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'local-store-'));
  dirs.push(dir);
  return dir;
}
afterAll(() => Promise.all(dirs.map((d) => fs.rm(d, { recursive: true, force: true }))));

describeObjectStoreContract('LocalStore', async () => {
  const root = await tempDir();
  return { store: new LocalStore({ root }) };
});

describe('LocalStore specifics', () => {
  it('keeps data and etags across re-instantiation on the same folder', async () => {
    const root = await tempDir();
    const { etag } = await new LocalStore({ root }).put('jobs/t/j/job.json', 'state');
    const again = new LocalStore({ root });
    expect((await again.get('jobs/t/j/job.json'))?.etag).toBe(etag);
    await again.put('jobs/t/j/job.json', 'next', { ifMatch: etag });
  });

  it('leaves no temp or lock files among the objects', async () => {
    const root = await tempDir();
    const store = new LocalStore({ root });
    await Promise.allSettled([1, 2, 3].map((i) => store.put('a/b', `x${i}`, { ifNoneMatch: '*' })));
    expect(await store.list('')).toEqual(['a/b']);
    expect(await fs.readdir(path.join(root, '.staging', 'tmp'))).toEqual([]);
  });

  it('breaks a lock left by a dead process', async () => {
    const root = await tempDir();
    const store = new LocalStore({ root, lock: { timeoutMs: 5_000 } });
    await store.put('k', 'v1');
    // The lock of key 'k', as a crashed holder would leave it: a pid that cannot be alive.
    const name = `${createHash('sha256').update('k').digest('hex').slice(0, 32)}.lock`;
    await fs.writeFile(path.join(root, '.staging', 'locks', name), '2147483646 deadbeef');
    await store.put('k', 'v2');
    expect((await store.get('k'))?.body.toString()).toBe('v2');
  });

  it('ifNoneMatch is race-safe across processes: exactly one of 6 wins', async () => {
    const root = await tempDir();
    const startAt = Date.now() + 2_500;
    const outs = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        run(process.execPath, ['--import', 'tsx', racer, root, 'cache/000001.kv', 'create', String(startAt), `p${i}`]),
      ),
    );
    expect(outs.map((o) => o.stdout.trim()).sort()).toEqual(['lost', 'lost', 'lost', 'lost', 'lost', 'won']);
  });

  it('ifMatch is race-safe across processes: exactly one of 6 CAS updates wins', async () => {
    const root = await tempDir();
    const { etag } = await new LocalStore({ root }).put('jobs/t/j/job.json', 'base');
    const startAt = Date.now() + 2_500;
    const outs = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        run(process.execPath, ['--import', 'tsx', racer, root, 'jobs/t/j/job.json', 'cas', String(startAt), `p${i}`, etag]),
      ),
    );
    expect(outs.map((o) => o.stdout.trim()).sort()).toEqual(['lost', 'lost', 'lost', 'lost', 'lost', 'won']);
  });
});
