import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { CHUNK_MAX_RECEIVES } from '../../shared/queue/constants.js';
import { acknowledge } from '../nag.js';

export interface QueuesProps {
  /**
   * Visibility timeout of a chunk task: one chunk plus headroom; the worker's heartbeat extends it
   * at half this window, so it only bounds how long a crashed worker's task stays hidden. @default 5 minutes
   */
  readonly chunkVisibility?: Duration;
  /** Receives before a chunk task is dead-lettered (and its job failed). @default CHUNK_MAX_RECEIVES (3, the embedded queue's too) */
  readonly chunkMaxReceives?: number;
  /** Attempts before a webhook event is dead-lettered; the dispatcher delays each retry. @default 8 */
  readonly webhookMaxReceives?: number;
  /** Visibility timeout of a webhook event: at least 6x the dispatcher's Lambda timeout (AWS guidance). @default 3 minutes */
  readonly webhookVisibility?: Duration;
  /** Alarm when the oldest chunk task has waited this long (scale-out or workers stuck). @default 20 minutes */
  readonly chunkAgeAlarm?: Duration;
}

/** The chunk queue (FIFO) and the webhook queue (standard), each with its dead-letter queue and alarms. */
export class Queues extends Construct {
  public readonly chunkQueue: sqs.Queue;
  public readonly chunkDeadLetterQueue: sqs.Queue;
  public readonly webhookQueue: sqs.Queue;
  public readonly webhookDeadLetterQueue: sqs.Queue;
  public readonly alarms: cloudwatch.Alarm[] = [];
  /** Visibility timeout of chunk tasks; the worker receives and heartbeats with the same window. */
  public readonly chunkVisibility: Duration;

  constructor(scope: Construct, id: string, props: QueuesProps = {}) {
    super(scope, id);
    const chunkVisibility = (this.chunkVisibility = props.chunkVisibility ?? Duration.minutes(5));
    const chunkMaxReceives = props.chunkMaxReceives ?? CHUNK_MAX_RECEIVES;
    const webhookMaxReceives = props.webhookMaxReceives ?? 8;
    const webhookVisibility = props.webhookVisibility ?? Duration.minutes(3);
    const chunkAgeAlarm = props.chunkAgeAlarm ?? Duration.minutes(20);
    for (const [name, v] of [['chunkMaxReceives', chunkMaxReceives], ['webhookMaxReceives', webhookMaxReceives]] as const) {
      if (!Number.isInteger(v) || v < 1 || v > 1000) throw new Error(`${name} must be an integer in [1, 1000], got ${v}`);
    }

    const common = { encryption: sqs.QueueEncryption.SQS_MANAGED, enforceSSL: true } as const;
    // Dead letters are kept the SQS maximum so an operator can inspect and redrive them.
    this.chunkDeadLetterQueue = new sqs.Queue(this, 'ChunkDeadLetterQueue', {
      ...common,
      fifo: true,
      retentionPeriod: Duration.days(14),
      // Read by a Lambda function: the visibility timeout must cover its timeout.
      visibilityTimeout: Duration.minutes(3),
    });
    this.chunkQueue = new sqs.Queue(this, 'ChunkQueue', {
      ...common,
      fifo: true,
      // The sender sets MessageDeduplicationId = job:chunk, so a body-hash dedup would be wrong (two jobs, same body).
      contentBasedDeduplication: false,
      // Dedup and throughput per message group (one group per job) instead of per queue.
      deduplicationScope: sqs.DeduplicationScope.MESSAGE_GROUP,
      fifoThroughputLimit: sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
      visibilityTimeout: chunkVisibility,
      retentionPeriod: Duration.days(4),
      deadLetterQueue: { queue: this.chunkDeadLetterQueue, maxReceiveCount: chunkMaxReceives },
    });
    this.webhookDeadLetterQueue = new sqs.Queue(this, 'WebhookDeadLetterQueue', {
      ...common,
      retentionPeriod: Duration.days(14),
      visibilityTimeout: Duration.minutes(3),
    });
    this.webhookQueue = new sqs.Queue(this, 'WebhookQueue', {
      ...common,
      visibilityTimeout: webhookVisibility,
      retentionPeriod: Duration.days(4),
      deadLetterQueue: { queue: this.webhookDeadLetterQueue, maxReceiveCount: webhookMaxReceives },
    });
    for (const dlq of [this.chunkDeadLetterQueue, this.webhookDeadLetterQueue]) {
      acknowledge(dlq, [{ id: 'AwsSolutions-SQS3', reason: 'This queue is itself a dead-letter queue.' }]);
    }

    // A handler drains each dead-letter queue at once, so depth alone would rarely show: alarm on any
    // dead letter received (a job failed / a webhook undelivered), and on depth that stays (the handler fails).
    for (const [name, dlq] of [['Chunk', this.chunkDeadLetterQueue], ['Webhook', this.webhookDeadLetterQueue]] as const) {
      this.alarms.push(
        new cloudwatch.Alarm(this, `${name}DeadLetterReceived`, {
          alarmDescription: `${name} tasks reached the dead-letter queue`,
          metric: dlq.metricNumberOfMessagesReceived({ period: Duration.minutes(5), statistic: 'Sum' }),
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        }),
        new cloudwatch.Alarm(this, `${name}DeadLetterDepth`, {
          alarmDescription: `${name} dead letters are not being handled`,
          metric: dlq.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: 'Minimum' }),
          threshold: 1,
          evaluationPeriods: 3,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        }),
      );
    }
    this.alarms.push(
      new cloudwatch.Alarm(this, 'ChunkOldestMessageAge', {
        alarmDescription: 'A chunk task has waited too long: workers are not scaling out or are stuck',
        metric: this.chunkQueue.metricApproximateAgeOfOldestMessage({ period: Duration.minutes(5), statistic: 'Maximum' }),
        threshold: chunkAgeAlarm.toSeconds(),
        evaluationPeriods: 2,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
    );
  }
}
