import { bodyLength, type ObjectHead, type ObjectStore, type PutBody, type PutOptions, type RangeRead, type StoredObject } from '../shared/store/object-store.js';

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

  put(key: string, body: PutBody, options?: PutOptions): Promise<{ etag: string }> {
    this.written += bodyLength(body);
    return this.inner.put(key, body, options);
  }

  async readRange(key: string, start: number, into: Uint8Array): Promise<RangeRead | null> {
    const got = await this.inner.readRange(key, start, into);
    this.read += got?.bytes ?? 0;
    return got;
  }

  list(prefix: string): Promise<string[]> {
    return this.inner.list(prefix);
  }

  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
}
