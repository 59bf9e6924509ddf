import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { processWebhookMessage, type DeliveryDeps } from '../shared/webhooks/deliver.js';
import { aws } from './lib/deps.js';
import { logger } from './lib/logger.js';
import { processBatch } from './lib/sqs-batch.js';

let deps: DeliveryDeps | undefined;

/** AWS: https only, no loopback; retries re-queue on the webhook queue itself. */
function awsDeliveryDeps(): DeliveryDeps {
  deps ??= {
    store: aws.store(),
    webhookQueue: aws.webhookQueue(),
    policy: { requireHttps: process.env.API_ALLOW_HTTP_WEBHOOKS !== 'true', allowLoopback: false },
    baseUrl: process.env.PUBLIC_API_URL,
  };
  return deps;
}

/**
 * SQS consumer of the webhook queue: each message is delivered, re-queued with backoff, or noted as
 * failed on the job; all of these succeed the record. Only infrastructure errors fail a record,
 * which SQS then redelivers (and after max receives moves to the webhook DLQ).
 */
export function makeDeliverWebhookHandler(getDeps: () => DeliveryDeps) {
  return middy<SQSEvent, SQSBatchResponse>().use(injectLambdaContext(logger)).handler((event) =>
    processBatch(event, async (record) => {
      const outcome = await processWebhookMessage(getDeps(), record.body);
      logger.info('webhook', { messageId: record.messageId, outcome });
    }),
  );
}

export const handler = makeDeliverWebhookHandler(awsDeliveryDeps);
