import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { QueueUnsupportedError, ReceiptHandleInvalidError } from './errors.js';
import type { QueueMessage, ReceiveOptions, SendOptions, SendResult, TaskQueue } from './task-queue.js';

export interface SqsQueueOptions {
  /** Created once by the caller and injected, so tests can hand in a mock or an emulator endpoint. */
  client: SQSClient;
  queueUrl: string;
  /** Defaults to whether the URL ends in `.fifo`, which is how SQS names FIFO queues. */
  fifo?: boolean;
}

/**
 * `TaskQueue` over SQS. On a FIFO queue, `groupId`/`dedupId` map to MessageGroupId/MessageDeduplicationId
 * and a per-message delay throws `QueueUnsupportedError` (SQS only allows a queue-wide delay there).
 * On a standard queue they are not sent (SQS rejects a deduplication id there) and `delaySec` works.
 * Dead-lettering is the queue's redrive policy; this adapter only surfaces `receiveCount`.
 */
export class SqsQueue implements TaskQueue {
  private readonly client: SQSClient;
  private readonly queueUrl: string;
  private readonly fifo: boolean;

  constructor({ client, queueUrl, fifo }: SqsQueueOptions) {
    this.client = client;
    this.queueUrl = queueUrl;
    this.fifo = fifo ?? queueUrl.endsWith('.fifo');
  }

  async send(body: string, { groupId, dedupId, delaySec }: SendOptions): Promise<SendResult> {
    if (this.fifo && delaySec) {
      throw new QueueUnsupportedError('SQS FIFO queues do not support a per-message delay (DelaySeconds)');
    }
    const out = await this.client.send(
      new SendMessageCommand({
        QueueUrl: this.queueUrl,
        MessageBody: body,
        ...(this.fifo ? { MessageGroupId: groupId, MessageDeduplicationId: dedupId } : { DelaySeconds: delaySec }),
      }),
    );
    return { id: out.MessageId ?? '' };
  }

  async receive({ max = 1, visibilitySec, waitSec = 0 }: ReceiveOptions): Promise<QueueMessage[]> {
    const out = await this.client.send(
      new ReceiveMessageCommand({
        QueueUrl: this.queueUrl,
        MaxNumberOfMessages: Math.min(Math.max(max, 1), 10),
        VisibilityTimeout: visibilitySec,
        WaitTimeSeconds: Math.min(waitSec, 20),
        MessageSystemAttributeNames: ['ApproximateReceiveCount', 'MessageGroupId'],
        // Deprecated spelling, still accepted by AWS; emulators such as local-aws-sqs only read this one.
        AttributeNames: ['All'],
      }),
    );
    return (out.Messages ?? []).map((m) => ({
      id: m.MessageId ?? '',
      receiptHandle: m.ReceiptHandle ?? '',
      body: m.Body ?? '',
      receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? 1),
      groupId: m.Attributes?.MessageGroupId,
    }));
  }

  async extendVisibility(receiptHandle: string, sec: number): Promise<void> {
    // Checked here so that an InvalidParameterValue from SQS can only be about the receipt handle.
    if (!Number.isInteger(sec) || sec < 0 || sec > MAX_VISIBILITY_SEC) {
      throw new RangeError(`visibility must be an integer in [0, ${MAX_VISIBILITY_SEC}] seconds, got ${sec}`);
    }
    try {
      await this.client.send(
        new ChangeMessageVisibilityCommand({ QueueUrl: this.queueUrl, ReceiptHandle: receiptHandle, VisibilityTimeout: sec }),
      );
    } catch (err) {
      if (isStaleReceipt(err)) throw new ReceiptHandleInvalidError(receiptHandle, { cause: err });
      throw err;
    }
  }

  async delete(receiptHandle: string): Promise<void> {
    try {
      await this.client.send(new DeleteMessageCommand({ QueueUrl: this.queueUrl, ReceiptHandle: receiptHandle }));
    } catch (err) {
      // The port makes a stale delete a no-op: the message was redelivered and its new holder deletes it.
      if (!isStaleReceipt(err)) throw err;
    }
  }
}

const MAX_VISIBILITY_SEC = 12 * 60 * 60;

/**
 * SQS answers a handle it never issued with ReceiptHandleIsInvalid, an expired one (visibility
 * passed, message redelivered) with InvalidParameterValue, a message no longer hidden with
 * MessageNotInflight. The handle is the only parameter these calls can get wrong once the
 * visibility is range-checked, so the error name alone decides.
 */
function isStaleReceipt(err: unknown): boolean {
  const name = (err as { name?: string } | null)?.name ?? '';
  return name === 'ReceiptHandleIsInvalid' || name === 'InvalidParameterValue' || name === 'MessageNotInflight';
}
