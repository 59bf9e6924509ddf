import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

/** Options for `withFileLock`. */
export interface FileLockOptions {
  /** A lock older than this is taken to belong to a hung or killed holder and is broken. */
  staleMs?: number;
  /** Give up (throw) after waiting this long. */
  timeoutMs?: number;
}

// Several async callers in one process queue here first, so they do not all spin on the lock file.
const inProcess = new Map<string, Promise<void>>();

/**
 * Runs `fn` while holding an exclusive lock on `lockPath`, across async callers of this process and
 * across processes on the same machine (an `O_EXCL` create is atomic on local filesystems).
 * The lock file holds `pid nonce`; a lock whose pid is dead, or that is older than `staleMs`, is broken.
 * Residual risk, accepted for a local store: two waiters that break the same stale lock at once
 * can both proceed; write-once puts stay safe because they also use `link()`.
 */
export async function withFileLock<T>(lockPath: string, fn: () => Promise<T>, options: FileLockOptions = {}): Promise<T> {
  const previous = inProcess.get(lockPath) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((resolve) => (release = resolve));
  const tail = previous.then(() => mine);
  inProcess.set(lockPath, tail);
  await previous;
  try {
    const token = await acquire(lockPath, options);
    try {
      return await fn();
    } finally {
      await releaseFile(lockPath, token);
    }
  } finally {
    release();
    if (inProcess.get(lockPath) === tail) inProcess.delete(lockPath);
  }
}

async function acquire(lockPath: string, { staleMs = 30_000, timeoutMs = 60_000 }: FileLockOptions): Promise<string> {
  const token = `${process.pid} ${randomBytes(8).toString('hex')}`;
  const deadline = Date.now() + timeoutMs;
  await fs.mkdir(path.dirname(lockPath), { recursive: true });
  for (let attempt = 0; ; attempt++) {
    try {
      await fs.writeFile(lockPath, token, { flag: 'wx' });
      return token;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (await isStale(lockPath, staleMs)) {
      // Rename first so that only one breaker removes this particular stale file.
      const aside = `${lockPath}.stale-${randomBytes(6).toString('hex')}`;
      await fs.rename(lockPath, aside).then(() => fs.rm(aside, { force: true }), () => undefined);
      continue;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for lock ${lockPath}`);
    // Jittered backoff, capped low: critical sections here last a few milliseconds.
    await new Promise((r) => setTimeout(r, Math.min(2 + attempt, 25) * (0.5 + Math.random())));
  }
}

async function isStale(lockPath: string, staleMs: number): Promise<boolean> {
  try {
    const [content, stat] = await Promise.all([fs.readFile(lockPath, 'utf8'), fs.stat(lockPath)]);
    if (Date.now() - stat.mtimeMs > staleMs) return true;
    const pid = Number(content.split(' ')[0]);
    if (!Number.isInteger(pid) || pid <= 0) return false; // being written right now
    if (pid === process.pid) return false;
    try {
      process.kill(pid, 0);
      return false;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ESRCH';
    }
  } catch {
    return false; // vanished between calls: the next create attempt will tell
  }
}

async function releaseFile(lockPath: string, token: string): Promise<void> {
  // Only remove our own lock: if it was broken as stale, someone else may hold it now.
  const content = await fs.readFile(lockPath, 'utf8').catch(() => null);
  if (content === token) await fs.rm(lockPath, { force: true });
}

/** Writes `data` to `target` atomically: a temp file in `tmpDir` (same filesystem), fsync, rename. */
export async function writeFileAtomic(target: string, data: Buffer | string, tmpDir: string): Promise<void> {
  const tmp = await writeTemp(data, tmpDir);
  try {
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.rename(tmp, target);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

const WRITE_SLICE = 8 * 2 ** 20;

/** Writes and fsyncs a uniquely named temp file (`data` in parts, one after the other); the caller renames or links it into place. */
export async function writeTemp(data: Buffer | string | readonly Uint8Array[], tmpDir: string, sync = true): Promise<string> {
  await fs.mkdir(tmpDir, { recursive: true });
  const tmp = path.join(tmpDir, `${process.pid}-${randomBytes(8).toString('hex')}.tmp`);
  const handle = await fs.open(tmp, 'wx');
  try {
    // Large parts in 8 MiB writes, so that one big object never holds a thread-pool thread for long.
    if (Array.isArray(data)) {
      for (const part of data as readonly Uint8Array[]) {
        for (let o = 0; o < part.byteLength; o += WRITE_SLICE) await handle.write(part, o, Math.min(WRITE_SLICE, part.byteLength - o));
      }
    }
    else await handle.writeFile(data as Buffer | string);
    if (sync) await handle.sync();
  } finally {
    await handle.close();
  }
  return tmp;
}
