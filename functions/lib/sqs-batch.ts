import type { SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { logger } from './logger.js';

/**
 * Runs `fn` on every record and reports the ones that threw as `batchItemFailures` (the event
 * source mapping must enable ReportBatchItemFailures); throws only when the whole batch failed.
 */
export async function processBatch(event: SQSEvent, fn: (record: SQSRecord) => Promise<void>): Promise<SQSBatchResponse> {
  const results = await Promise.allSettled(event.Records.map(fn));
  const failed = event.Records.filter((_, i) => results[i].status === 'rejected');
  results.forEach((r, i) => {
    if (r.status === 'rejected') {
      logger.error('record failed', { messageId: event.Records[i].messageId, error: String(r.reason) });
    }
  });
  if (failed.length > 0 && failed.length === event.Records.length) {
    throw new AggregateError(results.map((r) => (r as PromiseRejectedResult).reason), `all ${failed.length} records failed`);
  }
  return { batchItemFailures: failed.map((r) => ({ itemIdentifier: r.messageId })) };
}
