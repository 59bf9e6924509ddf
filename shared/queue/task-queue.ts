/** Options for `TaskQueue.send`. */
export interface SendOptions {
  /** FIFO group: messages of one group are delivered in order, one in flight at a time (chunk queue: the job id). */
  groupId: string;
  /** A second send with the same id within 5 minutes is dropped (chunk queue: `job:chunk`). */
  dedupId: string;
  /** Hide the message for this long after sending. Not supported per message on SQS FIFO queues. */
  delaySec?: number;
}

export interface SendResult {
  /** Id of the message; for a deduplicated send, the id of the message that was kept. */
  id: string;
}

export interface ReceiveOptions {
  /** At most this many messages (default 1, SQS caps at 10). */
  max?: number;
  /** The received messages stay hidden this long unless deleted or extended. */
  visibilitySec: number;
  /** Long poll: wait up to this long for a message (default 0). */
  waitSec?: number;
}

export interface QueueMessage {
  id: string;
  /** Names this delivery; a redelivery gets a new one. Use it to extend or delete. */
  receiptHandle: string;
  body: string;
  /** 1 on first delivery; dead-lettering happens when it would exceed the queue's max receives. */
  receiveCount: number;
  groupId?: string;
}

/**
 * Port over a FIFO task queue with visibility timeouts (SQS FIFO or the embedded `LocalQueue`).
 * At-least-once: a message not deleted before its visibility expires is delivered again.
 */
export interface TaskQueue {
  send(body: string, options: SendOptions): Promise<SendResult>;
  receive(options: ReceiveOptions): Promise<QueueMessage[]>;
  /** Sets the remaining invisibility to `sec` from now (heartbeat); throws `ReceiptHandleInvalidError` if stale. */
  extendVisibility(receiptHandle: string, sec: number): Promise<void>;
  /** Deleting with an unknown or stale handle does nothing (SQS semantics); it does not throw. */
  delete(receiptHandle: string): Promise<void>;
}

/** SQS keeps deduplication ids for 5 minutes. */
export const DEDUP_WINDOW_MS = 5 * 60 * 1000;
