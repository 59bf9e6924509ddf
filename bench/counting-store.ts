import type { ObjectHead, ObjectStore, PutOptions, StoredObject } from '../shared/store/object-store.js';

/** An ObjectStore decorator that counts payload bytes read and written, for the benchmark. */
export class CountingStore implements ObjectStore {
  private read = 0;
  private written = 0;

  constructor(private readonly inner: ObjectStore) {}

  /** Bytes since the last call. */
  take(): { read: number; written: number } {
    const io = { read: this.read, written: this.written };
    this.read = this.written = 0;
    return io;
  }

  async get(key: string): Promise<StoredObject | null> {
    const obj = await this.inner.get(key);
    this.read += obj?.body.length ?? 0;
    return obj;
  }

  head(key: string): Promise<ObjectHead | null> {
    return this.inner.head(key);
  }

  put(key: string, body: Buffer | Uint8Array | string, options?: PutOptions): Promise<{ etag: string }> {
    this.written += typeof body === 'string' ? Buffer.byteLength(body) : body.length;
    return this.inner.put(key, body, options);
  }

  list(prefix: string): Promise<string[]> {
    return this.inner.list(prefix);
  }

  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
}
