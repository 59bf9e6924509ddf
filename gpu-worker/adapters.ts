import * as path from 'node:path';
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { CHUNK_MAX_RECEIVES } from '../shared/queue/constants.js';
import { LocalQueue } from '../shared/queue/local-queue.js';
import { SqsQueue } from '../shared/queue/sqs-queue.js';
import type { TaskQueue } from '../shared/queue/task-queue.js';
import { LocalStore } from '../shared/store/local-store.js';
import { S3Store } from '../shared/store/s3-store.js';
import type { ObjectStore } from '../shared/store/object-store.js';

export interface Adapters {
  store: ObjectStore;
  chunkQueue: TaskQueue;
  webhookQueue: TaskQueue;
  /** Embedded mode only: where chunk tasks go after too many receives (AWS uses a redrive policy). */
  chunkDeadLetters?: TaskQueue;
}

/** The embedded store and queues, all under one folder: the default with no AWS account. */
export function localAdapters(dataDir: string): Adapters {
  const chunkDeadLetters = new LocalQueue({ dir: path.join(dataDir, 'queues', 'chunks-dlq') });
  return {
    store: new LocalStore({ root: path.join(dataDir, 'store') }),
    chunkQueue: new LocalQueue({ dir: path.join(dataDir, 'queues', 'chunks'), maxReceives: CHUNK_MAX_RECEIVES, deadLetterQueue: chunkDeadLetters }),
    webhookQueue: new LocalQueue({ dir: path.join(dataDir, 'queues', 'webhooks') }),
    chunkDeadLetters,
  };
}

/** S3 and SQS from the environment the CDK stack sets (BUCKET, CHUNK_QUEUE_URL, WEBHOOK_QUEUE_URL). */
export function awsAdapters(env: NodeJS.ProcessEnv = process.env): Adapters {
  const need = (name: string) => {
    const value = env[name];
    if (!value) throw new Error(`environment variable ${name} is required with STORE=s3`);
    return value;
  };
  const sqs = new SQSClient({});
  return {
    store: new S3Store({ client: s3Client(), bucket: need('BUCKET') }),
    chunkQueue: new SqsQueue({ client: sqs, queueUrl: need('CHUNK_QUEUE_URL') }),
    webhookQueue: new SqsQueue({ client: sqs, queueUrl: need('WEBHOOK_QUEUE_URL') }),
  };
}

/**
 * The worker's S3 client. The SDK's default CRC32 of every upload and download is computed in
 * JavaScript, a second pass over each cache segment (hundreds of MB at the paper's size) that its
 * per-frame SHA-256 already covers; other objects are small and travel over TLS.
 */
export function s3Client(config: S3ClientConfig = {}): S3Client {
  return new S3Client({ requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED', ...config });
}

export function adaptersFromEnv(env: NodeJS.ProcessEnv = process.env): Adapters {
  return env.STORE === 's3' ? awsAdapters(env) : localAdapters(env.DATA_DIR ?? '.data');
}
