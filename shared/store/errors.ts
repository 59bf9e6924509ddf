/** Base of every error raised by an `ObjectStore` adapter; decide with `instanceof`. */
export class StoreError extends Error {
  override name = 'StoreError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A conditional put (`ifNoneMatch: '*'` or `ifMatch: etag`) lost: the object exists, is absent, or changed. */
export class PreconditionFailedError extends StoreError {
  override name = 'PreconditionFailedError';
  constructor(
    readonly key: string,
    readonly condition: { ifNoneMatch?: '*'; ifMatch?: string },
    options?: { cause?: unknown },
  ) {
    super(`precondition failed for ${key} (${JSON.stringify(condition)})`, options);
  }
}

/** A key that could escape the store's root or name nothing (`..`, absolute, empty segment). */
export class InvalidKeyError extends StoreError {
  override name = 'InvalidKeyError';
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(`invalid key ${JSON.stringify(key)}: ${reason}`);
  }
}
