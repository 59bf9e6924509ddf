import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type { ObjectStore } from '../shared/store/object-store.js';
import { recordWebhookFailure } from '../shared/webhooks/deliver.js';
import { WebhookMessageSchema } from '../shared/webhooks/message.js';
import { aws } from './lib/deps.js';
import { logger } from './lib/logger.js';
import { processBatch } from './lib/sqs-batch.js';

/**
 * SQS consumer of the webhook DLQ: a message lands there when its delivery step kept crashing; the
 * failure is noted on the job (`webhook_failures` in GET). A message that is not an event is logged.
 */
export function makeWebhookDeadLetterHandler(getStore: () => ObjectStore) {
  return middy<SQSEvent, SQSBatchResponse>().use(injectLambdaContext(logger)).handler((event) =>
    processBatch(event, async (record) => {
      const parsed = WebhookMessageSchema.safeParse(safeJson(record.body));
      if (!parsed.success) {
        logger.error('unreadable webhook dead letter', { messageId: record.messageId });
        return;
      }
      const msg = parsed.data;
      await recordWebhookFailure(getStore(), msg, msg.last_error ?? 'delivery step failed repeatedly (dead-lettered)');
    }),
  );
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

let store: ObjectStore | undefined;
export const handler = makeWebhookDeadLetterHandler(() => (store ??= aws.store()));
