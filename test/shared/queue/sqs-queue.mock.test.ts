import 'aws-sdk-client-mock-vitest/extend';
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
  SQSServiceException,
} from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { QueueUnsupportedError, ReceiptHandleInvalidError } from '../../../shared/queue/errors.js';
import { SqsQueue } from '../../../shared/queue/sqs-queue.js';

const sqs = mockClient(SQSClient);
const client = new SQSClient({ region: 'us-east-1' });
const FIFO_URL = 'https://sqs.us-east-1.amazonaws.com/1/chunks.fifo';
const fifo = new SqsQueue({ client, queueUrl: FIFO_URL });
const standard = new SqsQueue({ client, queueUrl: 'https://sqs.us-east-1.amazonaws.com/1/webhooks' });

function sqsError(name: string): SQSServiceException {
  return new SQSServiceException({ name, $fault: 'client', $metadata: { httpStatusCode: 400 }, message: name });
}

beforeEach(() => sqs.reset());

describe('SqsQueue (mocked SQS)', () => {
  it('sends group and dedup ids on a FIFO queue', async () => {
    sqs.on(SendMessageCommand).resolves({ MessageId: 'm1' });
    await expect(fifo.send('{"chunk":1}', { groupId: 'job1', dedupId: 'job1:1' })).resolves.toEqual({ id: 'm1' });
    expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, {
      QueueUrl: FIFO_URL,
      MessageBody: '{"chunk":1}',
      MessageGroupId: 'job1',
      MessageDeduplicationId: 'job1:1',
    });
  });

  it('refuses a per-message delay on a FIFO queue with QueueUnsupportedError, without calling SQS', async () => {
    await expect(fifo.send('x', { groupId: 'g', dedupId: 'd', delaySec: 5 })).rejects.toBeInstanceOf(QueueUnsupportedError);
    expect(sqs).not.toHaveReceivedCommand(SendMessageCommand);
  });

  it('sends DelaySeconds and no FIFO ids on a standard queue', async () => {
    sqs.on(SendMessageCommand).resolves({ MessageId: 'w1' });
    await standard.send('event', { groupId: 'g', dedupId: 'd', delaySec: 30 });
    const input = sqs.commandCalls(SendMessageCommand)[0].args[0].input;
    expect(input).toMatchObject({ DelaySeconds: 30 });
    expect(input.MessageGroupId).toBeUndefined();
    expect(input.MessageDeduplicationId).toBeUndefined();
  });

  it('asks for the receive count and surfaces it', async () => {
    sqs.on(ReceiveMessageCommand).resolves({
      Messages: [
        { MessageId: 'm1', ReceiptHandle: 'rh1', Body: 'b1', Attributes: { ApproximateReceiveCount: '3', MessageGroupId: 'job1' } },
      ],
    });
    const got = await fifo.receive({ max: 25, visibilitySec: 120, waitSec: 30 });
    expect(got).toEqual([{ id: 'm1', receiptHandle: 'rh1', body: 'b1', receiveCount: 3, groupId: 'job1' }]);
    // SQS limits: at most 10 messages and 20 s of long polling per call.
    expect(sqs).toHaveReceivedCommandWith(ReceiveMessageCommand, {
      MaxNumberOfMessages: 10,
      VisibilityTimeout: 120,
      WaitTimeSeconds: 20,
      MessageSystemAttributeNames: expect.arrayContaining(['ApproximateReceiveCount']),
    });
  });

  it('extends visibility with ChangeMessageVisibility', async () => {
    sqs.on(ChangeMessageVisibilityCommand).resolves({});
    await fifo.extendVisibility('rh1', 300);
    expect(sqs).toHaveReceivedCommandWith(ChangeMessageVisibilityCommand, {
      QueueUrl: FIFO_URL,
      ReceiptHandle: 'rh1',
      VisibilityTimeout: 300,
    });
  });

  it.each(['ReceiptHandleIsInvalid', 'InvalidParameterValue', 'MessageNotInflight'])(
    'maps %s on ChangeMessageVisibility to ReceiptHandleInvalidError',
    async (name) => {
      sqs.on(ChangeMessageVisibilityCommand).rejects(sqsError(name));
      const err = await fifo.extendVisibility('old', 30).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ReceiptHandleInvalidError);
      expect((err as ReceiptHandleInvalidError).cause).toBeInstanceOf(SQSServiceException);
    },
  );

  it('range-checks the visibility before calling SQS', async () => {
    await expect(fifo.extendVisibility('rh', 13 * 3600)).rejects.toBeInstanceOf(RangeError);
    expect(sqs).not.toHaveReceivedCommand(ChangeMessageVisibilityCommand);
  });

  it('treats a stale delete as a no-op but passes other errors through', async () => {
    sqs.on(DeleteMessageCommand, { ReceiptHandle: 'stale' }).rejects(sqsError('ReceiptHandleIsInvalid'));
    sqs.on(DeleteMessageCommand, { ReceiptHandle: 'throttled' }).rejects(sqsError('ThrottlingException'));
    await expect(fifo.delete('stale')).resolves.toBeUndefined();
    await expect(fifo.delete('throttled')).rejects.toMatchObject({ name: 'ThrottlingException' });
  });
});
