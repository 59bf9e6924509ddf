/** Base of every error raised by a `TaskQueue` adapter; decide with `instanceof`. */
export class QueueError extends Error {
  override name = 'QueueError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The receipt handle is unknown or stale: the message was deleted or redelivered to someone else. */
export class ReceiptHandleInvalidError extends QueueError {
  override name = 'ReceiptHandleInvalidError';
  constructor(
    readonly receiptHandle: string,
    options?: { cause?: unknown },
  ) {
    super(`receipt handle is invalid or no longer current: ${receiptHandle}`, options);
  }
}

/** The backend cannot do what was asked (e.g. a per-message delay on an SQS FIFO queue). */
export class QueueUnsupportedError extends QueueError {
  override name = 'QueueUnsupportedError';
}
