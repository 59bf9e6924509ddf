import { createHash } from 'node:crypto';
import { promises as fs, type BigIntStats } from 'node:fs';
import * as path from 'node:path';
import { PreconditionFailedError, StoreError } from './errors.js';
import { withFileLock, writeTemp, type FileLockOptions } from './file-lock.js';
import {
  assertValidKey,
  assertValidPrefix,
  bodyBuffer,
  type ObjectHead,
  type ObjectStore,
  type PutBody,
  type PutOptions,
  type RangeRead,
  type StoredObject,
} from './object-store.js';

/** Objects of at least this many bytes get an identity ETag instead of a content hash (see etagOf). */
export const LARGE_OBJECT = 2 ** 20;

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
    const file = await this.openOrNull(key);
    if (!file) return null;
    try {
      const stat = await file.stat({ bigint: true });
      const body = await file.readFile();
      return { body, etag: await etagOf(stat, () => body) };
    } finally {
      await file.close();
    }
  }

  async head(key: string): Promise<ObjectHead | null> {
    const file = await this.openOrNull(key);
    if (!file) return null;
    try {
      const stat = await file.stat({ bigint: true });
      return { etag: await etagOf(stat, () => file.readFile()), size: Number(stat.size) };
    } finally {
      await file.close();
    }
  }

  async readRange(key: string, start: number, into: Uint8Array): Promise<RangeRead | null> {
    const file = await this.openOrNull(key);
    if (!file) return null;
    try {
      const stat = await file.stat({ bigint: true });
      const size = Number(stat.size);
      if (size < LARGE_OBJECT) {
        // Small: its ETag hashes the whole content, so read it all once.
        const body = await file.readFile();
        const bytes = Math.max(0, Math.min(into.byteLength, size - start));
        into.set(body.subarray(start, start + bytes));
        return { bytes, size, etag: await etagOf(stat, () => body) };
      }
      // Large: read in place until the buffer is full or the file ends (a read there gives 0 bytes).
      let bytes = 0;
      while (bytes < into.byteLength) {
        const { bytesRead } = await file.read(into, bytes, into.byteLength - bytes, start + bytes);
        if (bytesRead === 0) break;
        bytes += bytesRead;
      }
      return { bytes, size, etag: await etagOf(stat, () => file.readFile()) };
    } finally {
      await file.close();
    }
  }

  async put(key: string, body: PutBody, options: PutOptions = {}): Promise<{ etag: string }> {
    const file = this.pathOf(key);
    const { ifNoneMatch, ifMatch } = options;
    const condition = { ifNoneMatch, ifMatch };
    // Write the bytes before taking the lock: the critical section is then only a check and a rename.
    const parts = typeof body === 'string' ? [Buffer.from(body)] : Array.isArray(body) ? (body as readonly Uint8Array[]) : [body as Uint8Array];
    const tmp = await writeTemp(parts, path.join(this.root, STAGING, 'tmp'), options.durable ?? true);
    try {
      // The temp file's inode is the object's (rename and link keep it), and so is its ETag.
      const stat = await fs.stat(tmp, { bigint: true });
      const etag = await etagOf(stat, () => bodyBuffer(body));
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
          const current = await this.head(key);
          if (current === null || current.etag !== ifMatch) throw new PreconditionFailedError(key, condition);
        }
        await fs.rename(tmp, file);
      });
      return { etag };
    } finally {
      await fs.rm(tmp, { force: true });
    }
  }

  async list(prefix: string): Promise<string[]> {
    assertValidPrefix(prefix);
    // Walk only the deepest folder the prefix names fully, then filter by the partial tail.
    const slash = prefix.lastIndexOf('/');
    const base = slash < 0 ? '' : prefix.slice(0, slash);
    const keys: string[] = [];
    await this.walk(base, keys);
    // Array sort compares strings by UTF-16 code unit: the order the port promises.
    return keys.filter((k) => k.startsWith(prefix)).sort();
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

  private async openOrNull(key: string): Promise<fs.FileHandle | null> {
    try {
      const handle = await fs.open(this.pathOf(key), 'r');
      // A key that names a folder of other keys opens on Linux; it is not an object.
      if ((await handle.stat()).isDirectory()) {
        await handle.close();
        return null;
      }
      return handle;
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

/**
 * ETag: the quoted SHA-256 of the content for small objects (it survives restarts and needs no
 * sidecar file); for large ones (cache segments) the file's identity instead: size, inode and
 * modification time. An object's file is written once and renamed or linked into place, never
 * changed, so its identity names its content, and a large object is never hashed twice (its codec
 * hashes it already). `content` is read only for a small object.
 */
async function etagOf(stat: BigIntStats, content: () => Buffer | Promise<Buffer>): Promise<string> {
  if (stat.size >= BigInt(LARGE_OBJECT)) return `"L-${stat.size.toString(16)}-${stat.ino.toString(16)}-${stat.mtimeNs.toString(16)}"`;
  return `"${createHash('sha256').update(await content()).digest('hex')}"`;
}
