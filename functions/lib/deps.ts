import { readFileSync } from 'node:fs';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { apiConfigFromEnv } from '../../shared/api/config.js';
import type { ApiDeps } from '../../shared/api/types.js';
import { parseServedManifest } from '../../shared/model/served.js';
import { SqsQueue } from '../../shared/queue/sqs-queue.js';
import type { TaskQueue } from '../../shared/queue/task-queue.js';
import { S3Store } from '../../shared/store/s3-store.js';
import type { ObjectStore } from '../../shared/store/object-store.js';

/**
 * Created once per Lambda container, on first use: the embedded stack imports the same handler
 * modules and never makes an AWS client. Tests mock them with aws-sdk-client-mock.
 */
let clients: { s3: S3Client; sqs: SQSClient } | undefined;
const client = () => (clients ??= { s3: new S3Client({}), sqs: new SQSClient({}) });

function required(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`environment variable ${name} is not set`);
  return v;
}

let apiDeps: ApiDeps | undefined;

export const aws = {
  store: (): ObjectStore => new S3Store({ client: client().s3, bucket: required('BUCKET') }),
  chunkQueue: (): TaskQueue => new SqsQueue({ client: client().sqs, queueUrl: required('CHUNK_QUEUE_URL') }),
  webhookQueue: (): TaskQueue => new SqsQueue({ client: client().sqs, queueUrl: required('WEBHOOK_QUEUE_URL') }),
  /** API deps: S3 + the chunk queue + the manifest bundled at MODEL_MANIFEST_PATH (or MODEL_MANIFEST_JSON). */
  api(): ApiDeps {
    apiDeps ??= {
      store: aws.store(),
      chunkQueue: aws.chunkQueue(),
      manifest: parseServedManifest(
        JSON.parse(process.env.MODEL_MANIFEST_JSON ?? readFileSync(required('MODEL_MANIFEST_PATH'), 'utf8')),
        process.env.MODEL_MANIFEST_PATH ?? 'MODEL_MANIFEST_JSON',
      ),
      config: apiConfigFromEnv(),
    };
    return apiDeps;
  },
  /** Tests: forget the cached deps so a changed environment is read again. */
  reset(): void {
    apiDeps = undefined;
  },
};
