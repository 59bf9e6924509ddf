import 'aws-sdk-client-mock-vitest/extend';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, NoSuchKey, S3Client } from '@aws-sdk/client-s3';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { makeReapHandler } from '../../functions/reap-stalled-jobs.js';
import { newJob } from '../../shared/jobs/lifecycle.js';
import { jobKey } from '../../shared/keys.js';
import { SqsQueue } from '../../shared/queue/sqs-queue.js';
import type { Job } from '../../shared/schemas/job.js';
import { S3Store } from '../../shared/store/s3-store.js';
import { lambdaContext } from '../api/helpers.js';

const s3 = mockClient(S3Client);
const sqs = mockClient(SQSClient);
const QUEUE = 'https://sqs.eu-west-1.amazonaws.com/1/chunks.fifo';
const handler = makeReapHandler(() => ({
  store: new S3Store({ client: new S3Client({ region: 'eu-west-1' }), bucket: 'bucket' }),
  chunkQueue: new SqsQueue({ client: new SQSClient({ region: 'eu-west-1' }), queueUrl: QUEUE }),
}), 600);

const old = '2020-01-01T00:00:00.000Z';
function job(id: string, over: Partial<Job> = {}): Job {
  const created = newJob({
    id, tenant: 't1',
    request: { frames: 15, seed: 1, guidance: 2, steps: 4, init_frames: { count: 0, keys: [] }, webhook_events_filter: ['completed'] },
    manifest: { name: 'm', onnx_sha256: 'a'.repeat(64), chunk_frames: 3 },
    now: new Date(old),
  });
  // Two of five chunks recorded, long ago.
  return { ...created, status: 'processing', progress: { ...created.progress, chunks_done: 2, frames_done: 6 }, ...over };
}
const body = (value: unknown) => ({ Body: { transformToByteArray: async () => new Uint8Array(Buffer.from(JSON.stringify(value))) } as never, ETag: '"e1"' });

beforeEach(() => {
  s3.reset();
  sqs.reset();
  s3.on(GetObjectCommand).rejects(new NoSuchKey({ message: 'no', $metadata: {} }));
  s3.on(ListObjectsV2Command).resolves({ Contents: [{ Key: 'active/t1/vid_1' }, { Key: 'active/t1/vid_2' }] });
  s3.on(GetObjectCommand, { Key: jobKey('t1', 'vid_1') }).resolves(body(job('vid_1')));
  s3.on(GetObjectCommand, { Key: jobKey('t1', 'vid_2') }).resolves(body(job('vid_2', { status: 'succeeded' })));
  s3.on(DeleteObjectCommand).resolves({});
  sqs.on(SendMessageCommand).resolves({ MessageId: 'm1' });
});

describe('reap-stalled-jobs (mocked S3 and SQS)', () => {
  it('sends the stalled job\'s next chunk to the FIFO queue in its group, deduplicated per stalled state, and drops a finished job\'s marker', async () => {
    expect(await handler({}, lambdaContext())).toEqual({ active: 1, requeued: 1, cleared: 1 });
    expect(s3).toHaveReceivedCommandWith(ListObjectsV2Command, { Bucket: 'bucket', Prefix: 'active/' });
    expect(sqs).toHaveReceivedCommandTimes(SendMessageCommand, 1);
    expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, {
      QueueUrl: QUEUE, MessageGroupId: 'vid_1', MessageDeduplicationId: `vid_1:2:reap:${Date.parse(old)}`,
    });
    expect(JSON.parse(sqs.commandCalls(SendMessageCommand)[0].args[0].input.MessageBody!)).toMatchObject({ job: 'vid_1', tenant: 't1', chunk: 2 });
    expect(s3).toHaveReceivedCommandWith(DeleteObjectCommand, { Bucket: 'bucket', Key: 'active/t1/vid_2' });
  });
});
