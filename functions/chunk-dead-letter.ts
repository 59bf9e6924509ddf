import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import middy from '@middy/core';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { updateJob } from '../shared/jobs/job-store.js';
import { recordJobEnded } from '../shared/observability/metrics.js';
import type { TaskQueue } from '../shared/queue/task-queue.js';
import { ChunkTaskSchema } from '../shared/schemas/chunk-task.js';
import { isTerminal } from '../shared/schemas/job.js';
import type { ObjectStore } from '../shared/store/object-store.js';
import { emitJobEvent } from '../shared/webhooks/emit.js';
import { aws } from './lib/deps.js';
import { logger } from './lib/logger.js';
import { processBatch } from './lib/sqs-batch.js';

export interface ChunkDeadLetterDeps {
  store: ObjectStore;
  webhookQueue: TaskQueue;
}

/** Marks the job of a dead-lettered chunk task failed (`max_receives`) and sends its `completed` event. */
export async function failJobOfDeadChunk(deps: ChunkDeadLetterDeps, body: string, now = new Date()): Promise<void> {
  const task = ChunkTaskSchema.safeParse(safeJson(body));
  if (!task.success) {
    logger.error('unreadable chunk dead letter', { body: body.slice(0, 200) });
    return;
  }
  const { job: id, tenant, chunk } = task.data;
  let ended = false;
  const updated = await updateJob(deps.store, tenant, id, (job) => {
    ended = !isTerminal(job.status);
    if (!ended) return null;
    return {
      ...job,
      status: 'failed',
      completed_at: now.toISOString(),
      error: { code: 'max_receives', message: `chunk ${chunk} failed on every attempt and was dead-lettered` },
    };
  });
  if (ended) recordJobEnded('failed');
  // Also when it was already failed by us: a retried batch must still get its event out (dedup keeps it single).
  if (updated && updated.job.status === 'failed' && updated.job.error?.code === 'max_receives') {
    await emitJobEvent(deps.webhookQueue, updated.job, 'completed');
  }
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
