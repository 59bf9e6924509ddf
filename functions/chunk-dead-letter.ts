import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { endJob, type EndJobDeps } from '../shared/jobs/lifecycle.js';
import { ChunkTaskSchema } from '../shared/schemas/chunk-task.js';
import { aws } from './lib/deps.js';
import { logger } from './lib/logger.js';
import { processBatch } from './lib/sqs-batch.js';

export type ChunkDeadLetterDeps = EndJobDeps;

/** Marks the job of a dead-lettered chunk task failed (`max_receives`) and sends its `completed` event. */
export async function failJobOfDeadChunk(deps: ChunkDeadLetterDeps, body: string, now = new Date()): Promise<void> {
  const task = ChunkTaskSchema.safeParse(safeJson(body));
  if (!task.success) {
    logger.error('unreadable chunk dead letter', { body: body.slice(0, 200) });
    return;
  }
  const { job: id, tenant, chunk } = task.data;
  // A retried batch finds the job already failed so, and still gets its event out (its id keeps it single).
  await endJob(deps, { tenant, id }, {
    status: 'failed',
    error: { code: 'max_receives', message: `chunk ${chunk} failed on every attempt and was dead-lettered` },
  }, () => now);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** SQS consumer of the chunk queue's dead-letter queue. */
export function makeChunkDeadLetterHandler(getDeps: () => ChunkDeadLetterDeps) {
  return middy<SQSEvent, SQSBatchResponse>().use(injectLambdaContext(logger)).handler((event) =>
    processBatch(event, (record) => failJobOfDeadChunk(getDeps(), record.body)),
  );
}

let deps: ChunkDeadLetterDeps | undefined;
export const handler = makeChunkDeadLetterHandler(() => (deps ??= { store: aws.store(), webhookQueue: aws.webhookQueue() }));
