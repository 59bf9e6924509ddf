import { CreateQueueCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll } from 'vitest';
import { SqsQueue } from '../../../shared/queue/sqs-queue.js';
import { startSqs, type SqsEmulator } from '../emulators.js';
import { describeTaskQueueContract } from './task-queue.contract.js';

let sqs: SqsEmulator;
let n = 0;
beforeAll(async () => {
  sqs = await startSqs();
});
afterAll(() => sqs.close());

describeTaskQueueContract(
  'SqsQueue on local-aws-sqs (FIFO + redrive policy)',
  async ({ maxReceives }) => {
    // A fresh FIFO queue and dead-letter queue per test; the redrive policy does the dead-lettering, as on AWS.
    const id = ++n;
    const dlqName = `dlq-${id}.fifo`;
    const dlq = await sqs.client.send(new CreateQueueCommand({ QueueName: dlqName, Attributes: { FifoQueue: 'true' } }));
    const main = await sqs.client.send(
      new CreateQueueCommand({
        QueueName: `chunks-${id}.fifo`,
        Attributes: {
          FifoQueue: 'true',
          RedrivePolicy: JSON.stringify({ deadLetterTargetArn: sqs.arn(dlqName), maxReceiveCount: maxReceives }),
        },
      }),
    );
    const deadQueue = new SqsQueue({ client: sqs.client, queueUrl: dlq.QueueUrl! });
    return {
      queue: new SqsQueue({ client: sqs.client, queueUrl: main.QueueUrl! }),
      advance: (sec) => new Promise((r) => setTimeout(r, sec * 1000)),
      deadLetters: async () => (await deadQueue.receive({ max: 10, visibilitySec: 30 })).map((m) => m.body),
    };
  },
  {
    groupOneInFlight:
      'local-aws-sqs 2.0.2 hands out the next message of a FIFO group while an earlier one is still in flight ' +
      '(AWS does not); the LocalQueue contract run covers this case',
  },
);
