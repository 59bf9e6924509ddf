import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';

/** Metric names, shared by the code that emits them and the dashboard that shows them. */
export const METRIC = {
  /** Seconds one chunk took on the worker, from reading the job to recording the chunk. */
  chunkSeconds: 'ChunkSeconds',
  /** Seconds from a job's creation to the start of its chunk 0. */
  queueWaitSeconds: 'QueueWaitSeconds',
  /** Jobs that reached a final status; dimension `status`. */
  jobsEnded: 'JobsEnded',
  /** Webhook events given up on (noted on the job as `webhook_failures`). */
  webhookFailures: 'WebhookFailures',
  /** Stored cache segments or frames rebuilt from their sources (noted on the job as `repairs`). */
  cacheRebuilds: 'CacheRebuilds',
} as const;

/** The stack's POWERTOOLS_METRICS_NAMESPACE and POWERTOOLS_SERVICE_NAME, for the functions and the worker alike. */
export const METRICS_NAMESPACE = 'Ca2vdm';
export const SERVICE_NAME = 'ca2vdm';

export const FINAL_STATUSES = ['succeeded', 'failed', 'canceled'] as const;
export type FinalStatus = (typeof FINAL_STATUSES)[number];

type Unit = (typeof MetricUnit)[keyof typeof MetricUnit];

let metrics: Metrics | undefined;

/**
 * The Powertools Metrics instance, or none when POWERTOOLS_METRICS_NAMESPACE is unset: the stack
 * sets it for the functions and the worker; the embedded mode leaves it unset, so its stdout stays
 * readable (set it there to see the EMF lines).
 */
function enabled(): Metrics | undefined {
  if (!process.env.POWERTOOLS_METRICS_NAMESPACE) return undefined;
  metrics ??= new Metrics({ serviceName: process.env.POWERTOOLS_SERVICE_NAME || SERVICE_NAME });
  return metrics;
}

// Each value is written at once as its own EMF line: the worker runs for days and the functions
// end in several places, so nothing waits in a buffer for a flush that may not come.
function emit(name: string, unit: Unit, value: number, dimensions: Record<string, string> = {}): void {
  const one = enabled()?.singleMetric();
  if (!one) return;
  for (const [key, v] of Object.entries(dimensions)) one.addDimension(key, v);
  one.addMetric(name, unit, value);
}

export const recordChunkSeconds = (seconds: number) => emit(METRIC.chunkSeconds, MetricUnit.Seconds, seconds);
export const recordQueueWait = (seconds: number) => emit(METRIC.queueWaitSeconds, MetricUnit.Seconds, seconds);
export const recordJobEnded = (status: FinalStatus) => emit(METRIC.jobsEnded, MetricUnit.Count, 1, { status });
export const countWebhookFailure = () => emit(METRIC.webhookFailures, MetricUnit.Count, 1);
export const countCacheRebuild = () => emit(METRIC.cacheRebuilds, MetricUnit.Count, 1);
