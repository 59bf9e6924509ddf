import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { PreconditionFailedError, StoreError } from './errors.js';
import { withFileLock, writeTemp, type FileLockOptions } from './file-lock.js';
import {
  assertValidKey,
  assertValidPrefix,
  type ObjectHead,
  type ObjectStore,
  type PutOptions,
  type StoredObject,
} from './object-store.js';

/** Reserved top-level folder for temp files and locks; `assertValidKey` rejects dot segments, so no key lands here. */
const STAGING = '.staging';

export interface LocalStoreOptions {
  /** Root folder; created on first write. */
  root: string;
  lock?: FileLockOptions;
}

/**
 * `ObjectStore` over a folder: key `a/b/c` is the file `root/a/b/c`.
 * Writes are atomic (temp file + rename), so readers see the old or the new bytes, never a mix.
 * ETag = quoted SHA-256 of the content, so it survives restarts and needs no sidecar file.
 * Every mutation of a key holds a per-key lock file, which makes `ifMatch` a true
 * compare-and-swap across processes; `ifNoneMatch` additionally uses `link()`, which fails
 * atomically if the target exists.
 */
export class LocalStore implements ObjectStore {
  readonly root: string;
  private readonly lockOptions: FileLockOptions;

  constructor(options: LocalStoreOptions) {
    this.root = path.resolve(options.root);
    this.lockOptions = options.lock ?? {};
  }

  async get(key: string): Promise<StoredObject | null> {
    const body = await this.readOrNull(key);
    return body === null ? null : { body, etag: etagOf(body) };
  }

  async head(key: string): Promise<ObjectHead | null> {
    const body = await this.readOrNull(key);
    return body === null ? null : { etag: etagOf(body), size: body.length };
  }

  async put(key: string, body: Buffer | Uint8Array | string, options: PutOptions = {}): Promise<{ etag: string }> {
    const file = this.pathOf(key);
    const data = typeof body === 'string' ? Buffer.from(body) : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    const etag = etagOf(data);
    const { ifNoneMatch, ifMatch } = options;
    const condition = { ifNoneMatch, ifMatch };
    // Write the bytes before taking the lock: the critical section is then only a check and a rename.
    const tmp = await writeTemp(data, path.join(this.root, STAGING, 'tmp'));
    try {
      await this.locked(key, async () => {
        await fs.mkdir(path.dirname(file), { recursive: true }).catch((err) => {
          throw new StoreError(`cannot create folder for ${key}`, { cause: err });
        });
        if (ifNoneMatch === '*') {
          try {
            await fs.link(tmp, file);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new PreconditionFailedError(key, condition);
            throw err;
          }
          return;
        }
        if (ifMatch !== undefined) {
          const current = await this.readOrNull(key);
          if (current === null || etagOf(current) !== ifMatch) throw new PreconditionFailedError(key, condition);
        }
        await fs.rename(tmp, file);
      });
    } finally {
      await fs.rm(tmp, { force: true });
    }
    return { etag };
  }

  async list(prefix: string): Promise<string[]> {
    assertValidPrefix(prefix);
    // Walk only the deepest folder the prefix names fully, then filter by the partial tail.
    const slash = prefix.lastIndexOf('/');
    const base = slash < 0 ? '' : prefix.slice(0, slash);
    const keys: string[] = [];
    await this.walk(base, keys);
    return keys.filter((k) => k.startsWith(prefix)).sort(byCodeUnit);
  }

  async delete(key: string): Promise<void> {
    const file = this.pathOf(key);
    await this.locked(key, () => fs.rm(file, { force: true }));
  }

  private async walk(relDir: string, out: string[]): Promise<void> {
    let entries;
    try {
      entries = await fs.readdir(path.join(this.root, relDir), { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw err;
    }
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue; // staging area and foreign dotfiles are not objects
      const rel = relDir === '' ? entry.name : `${relDir}/${entry.name}`;
      if (entry.isDirectory()) await this.walk(rel, out);
      else if (entry.isFile()) out.push(rel);
    }
  }

  private async readOrNull(key: string): Promise<Buffer | null> {
    try {
      return await fs.readFile(this.pathOf(key));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // ENOTDIR: a parent segment is a file; EISDIR: the key names a folder of other keys.
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return null;
      throw err;
    }
  }

  private pathOf(key: string): string {
    assertValidKey(key);
    return path.join(this.root, ...key.split('/'));
  }

  private locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    // Hash the key: lock names stay short and flat whatever the key's depth.
    const name = createHash('sha256').update(key).digest('hex').slice(0, 32);
    return withFileLock(path.join(this.root, STAGING, 'locks', `${name}.lock`), fn, this.lockOptions);
  }
}

function etagOf(body: Buffer): string {
  return `"${createHash('sha256').update(body).digest('hex')}"`;
}

function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
