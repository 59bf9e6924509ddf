import 'aws-sdk-client-mock-vitest/extend';
import { GetObjectCommand, ListObjectsV2Command, NoSuchKey, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import type { APIGatewayProxyResult, SQSBatchResponse } from 'aws-lambda';
import { beforeAll, beforeEach, describe, expect, test, vi } from 'vitest';
import { apiKeyRecordKey } from '../../shared/auth/api-keys.js';
import { newJob } from '../../shared/jobs/lifecycle.js';
import { jobKey } from '../../shared/keys.js';
import { SqsQueue } from '../../shared/queue/sqs-queue.js';
import type { Job } from '../../shared/schemas/job.js';
import { S3Store } from '../../shared/store/s3-store.js';
import { webhookSecretKey } from '../../shared/webhooks/secrets.js';
import { httpEvent, lambdaContext, sqsEvent, testManifest } from '../api/helpers.js';
import { captureEmf } from '../shared/emf.js';

const CHUNK_QUEUE = 'https://sqs.eu-west-1.amazonaws.com/1/chunks.fifo';
const WEBHOOK_QUEUE = 'https://sqs.eu-west-1.amazonaws.com/1/webhooks';
const KEY = 'c2v_testkeytestkeytestkeytestkeytest';

vi.stubEnv('AWS_REGION', 'eu-west-1');
vi.stubEnv('AWS_ACCESS_KEY_ID', 'AKIDTEST');
vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'secret');
vi.stubEnv('BUCKET', 'bucket');
vi.stubEnv('CHUNK_QUEUE_URL', CHUNK_QUEUE);
vi.stubEnv('WEBHOOK_QUEUE_URL', WEBHOOK_QUEUE);
vi.stubEnv('MODEL_MANIFEST_JSON', JSON.stringify(testManifest()));

const s3 = mockClient(S3Client);
const sqs = mockClient(SQSClient);

// Imported after the env is set; the handlers build their deps on first call.
type Handler = (e: unknown, c: unknown) => Promise<unknown>;
const handlers = {} as Record<string, Handler>;
beforeAll(async () => {
  handlers['create-video'] = (await import('../../functions/create-video.js')).handler as unknown as Handler;
  handlers['get-video'] = (await import('../../functions/get-video.js')).handler as unknown as Handler;
  handlers['cancel-video'] = (await import('../../functions/cancel-video.js')).handler as unknown as Handler;
  handlers['chunk-dead-letter'] = (await import('../../functions/chunk-dead-letter.js')).handler as unknown as Handler;
  handlers['webhook-dead-letter'] = (await import('../../functions/webhook-dead-letter.js')).handler as unknown as Handler;
});

function body(value: unknown) {
  const bytes = Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));
  return { Body: { transformToByteArray: async () => new Uint8Array(bytes) } as never, ETag: '"e1"' };
}

function storedJob(over: Partial<Job> = {}): Job {
  const job = newJob({
    id: 'vid_1',
    tenant: 't1',
    request: { frames: 8, seed: 1, guidance: 2, steps: 25, init_frames: { count: 0, keys: [] }, webhook: 'https://hooks.example.com/x', webhook_events_filter: ['completed'] },
    manifest: { name: 'test-model', onnx_sha256: 'a'.repeat(64), chunk_frames: 4 },
    now: new Date('2030-01-01T00:00:00.000Z'),
  });
  // Half made: chunk 0 of 2 recorded.
  return { ...job, status: 'processing', progress: { ...job.progress, chunks_done: 1, frames_done: 4 }, metrics: { chunk_seconds: [1.5] }, ...over };
}

beforeEach(() => {
  s3.reset();
  sqs.reset();
  s3.on(GetObjectCommand).rejects(new NoSuchKey({ message: 'no', $metadata: {} }));
  s3.on(GetObjectCommand, { Key: apiKeyRecordKey(KEY) }).resolves(body({ tenant: 't1', created_at: '2030-01-01T00:00:00.000Z' }));
  s3.on(PutObjectCommand).resolves({ ETag: '"e2"' });
  s3.on(ListObjectsV2Command).resolves({ Contents: [] });
  sqs.on(SendMessageCommand).resolves({ MessageId: 'm1' });
});

const call = async (name: string, event: unknown) => (await handlers[name](event, lambdaContext())) as APIGatewayProxyResult;

describe('create-video', () => {
  test('202: job.json created once in S3, chunk 0 sent to the FIFO queue grouped by job', async () => {
    const res = await call('create-video', httpEvent({ httpMethod: 'POST', key: KEY, json: { frames: 10, label: '1 ball' } }));
    expect(res.statusCode).toBe(202);
    const job = JSON.parse(res.body);
    expect(job.urls.get).toBe(`https://abc.execute-api.eu-west-1.amazonaws.com/prod/v1/videos/${job.id}`);
    expect(s3).toHaveReceivedCommandWith(PutObjectCommand, { Bucket: 'bucket', Key: jobKey('t1', job.id), IfNoneMatch: '*' });
    expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, {
      QueueUrl: CHUNK_QUEUE,
      MessageGroupId: job.id,
      MessageDeduplicationId: `${job.id}:0`,
    });
    const task = JSON.parse(sqs.commandCalls(SendMessageCommand)[0].args[0].input.MessageBody!);
    expect(task).toMatchObject({ job: job.id, tenant: 't1', chunk: 0 });
  });

  test('400 naming the field, and nothing written or sent', async () => {
    const res = await call('create-video', httpEvent({ httpMethod: 'POST', key: KEY, json: { frames: 10, steps: 1e6 } }));
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body).error).toMatchObject({ code: 'invalid_request', field: 'steps' });
    expect(s3).not.toHaveReceivedCommand(PutObjectCommand);
    expect(sqs).not.toHaveReceivedCommand(SendMessageCommand);
  });

  test('401 without a key; http webhooks refused in the AWS mode', async () => {
    expect((await call('create-video', httpEvent({ httpMethod: 'POST', json: { frames: 4 } }))).statusCode).toBe(401);
    const res = await call('create-video', httpEvent({ httpMethod: 'POST', key: KEY, json: { frames: 4, webhook: 'http://93.184.216.34/x' } }));
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body).error.field).toBe('webhook');
  });

  test('500 hides the details of an unexpected failure', async () => {
    sqs.on(SendMessageCommand).rejects(new Error('secret internal detail'));
    const res = await call('create-video', httpEvent({ httpMethod: 'POST', key: KEY, json: { frames: 4 } }));
    expect(res.statusCode).toBe(500);
    expect(res.body).not.toContain('secret internal detail');
    expect(JSON.parse(res.body).error.code).toBe('internal_error');
  });
});

describe('get-video', () => {
  test('200 with presigned S3 output links and their expiry', async () => {
    const job = storedJob({ status: 'succeeded', outputs: { video: 'jobs/t1/vid_1/output/video.mp4' } });
    s3.on(GetObjectCommand, { Key: jobKey('t1', 'vid_1') }).resolves(body(job));
    const res = await call('get-video', httpEvent({ key: KEY, pathParameters: { id: 'vid_1' } }));
    expect(res.statusCode).toBe(200);
    const got = JSON.parse(res.body);
    expect(got.output.video).toMatch(/^https:\/\/bucket\.s3\.eu-west-1\.amazonaws\.com\/jobs\/t1\/vid_1\/output\/video\.mp4\?.*X-Amz-Signature=/);
    expect(got.urls_expire_at).toEqual(expect.any(String));
    expect(got.progress.chunks_done).toBe(1);
  });

  test('404 for a job S3 does not have under this tenant', async () => {
    const res = await call('get-video', httpEvent({ key: KEY, pathParameters: { id: 'vid_other' } }));
    expect(res.statusCode).toBe(404);
    expect(s3).toHaveReceivedCommandWith(GetObjectCommand, { Key: jobKey('t1', 'vid_other') });
  });
});

describe('cancel-video', () => {
  test('compare-and-swap put of cancel_requested on the ETag read', async () => {
    s3.on(GetObjectCommand, { Key: jobKey('t1', 'vid_1') }).resolves(body(storedJob()));
    const res = await call('cancel-video', httpEvent({ httpMethod: 'POST', key: KEY, pathParameters: { id: 'vid_1' } }));
    expect(res.statusCode).toBe(202);
    expect(s3).toHaveReceivedCommandWith(PutObjectCommand, { Key: jobKey('t1', 'vid_1'), IfMatch: '"e1"' });
    const put = s3.commandCalls(PutObjectCommand)[0].args[0].input;
    expect(JSON.parse(put.Body as string).cancel_requested).toBe(true);
  });
});

describe('chunk-dead-letter', () => {
  test('marks the job failed (max_receives) and queues its completed event', async () => {
    s3.on(GetObjectCommand, { Key: jobKey('t1', 'vid_1') }).resolves(body(storedJob()));
    const out = (await handlers['chunk-dead-letter'](sqsEvent([JSON.stringify({ job: 'vid_1', tenant: 't1', chunk: 1 })]), lambdaContext())) as SQSBatchResponse;
    expect(out.batchItemFailures).toEqual([]);
    const put = JSON.parse(s3.commandCalls(PutObjectCommand)[0].args[0].input.Body as string);
    expect(put).toMatchObject({ status: 'failed', error: { code: 'max_receives' } });
    expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, { QueueUrl: WEBHOOK_QUEUE });
    const event = JSON.parse(sqs.commandCalls(SendMessageCommand)[0].args[0].input.MessageBody!);
    expect(event).toMatchObject({ type: 'completed', job_id: 'vid_1', payload: { job: { status: 'failed' } } });
  });
});

describe('deliver-webhook', () => {
  const event = (id: string) =>
    JSON.stringify({ id, type: 'completed', job_id: 'vid_1', tenant: 't1', created_at: '2030-01-01T00:00:00.000Z', payload: { job: storedJob() }, attempt: 1 });

  test('delivers, re-queues a failed try with a delay, and reports only broken records', async () => {
    const { makeDeliverWebhookHandler } = await import('../../functions/deliver-webhook.js');
    s3.on(GetObjectCommand, { Key: webhookSecretKey('t1') }).resolves(body({ secret: 'whsec_c2VjcmV0', created_at: '2030-01-01T00:00:00.000Z' }));
    const posted: string[] = [];
    const sentBodies: { timestamp: string; data: { urls_expire_at: string } }[] = [];
    const handler = makeDeliverWebhookHandler(() => ({
      store: new S3Store({ client: new S3Client({}), bucket: 'bucket' }),
      webhookQueue: new SqsQueue({ client: new SQSClient({}), queueUrl: WEBHOOK_QUEUE }),
      policy: { requireHttps: true, allowLoopback: false },
      resolve: async () => [{ address: '93.184.216.34', family: 4 }],
      random: () => 0,
      post: async (_url, headers, text) => {
        posted.push(headers['webhook-id']);
        sentBodies.push(JSON.parse(text));
        return { status: headers['webhook-id'] === 'msg_ok' ? 200 : 500 };
      },
    }));
    const out = (await handler(sqsEvent([event('msg_ok'), event('msg_retry'), '{"not":"json"']), lambdaContext())) as SQSBatchResponse;
    expect(posted.sort()).toEqual(['msg_ok', 'msg_retry']);
    // Links as long-lived as the API's (1 h), which a role's temporary credentials can honour.
    const { timestamp, data } = sentBodies[0];
    expect(Date.parse(data.urls_expire_at) - Date.parse(timestamp)).toBe(3600 * 1000);
    expect(out.batchItemFailures).toEqual([]); // unreadable messages are logged and dropped, not retried forever
    expect(sqs).toHaveReceivedCommandWith(SendMessageCommand, { QueueUrl: WEBHOOK_QUEUE, DelaySeconds: 5 });
    const retry = JSON.parse(sqs.commandCalls(SendMessageCommand)[0].args[0].input.MessageBody!);
    expect(retry).toMatchObject({ id: 'msg_retry', attempt: 2, last_error: 'receiver answered 500' });

    s3.on(GetObjectCommand, { Key: webhookSecretKey('t1') }).rejects(new Error('S3 down'));
    const out2 = (await handler(sqsEvent([event('msg_ok'), '{"not":"json"']), lambdaContext())) as SQSBatchResponse;
    expect(out2.batchItemFailures).toEqual([{ itemIdentifier: 'm0' }]);
  });
});

describe('metrics and logs', () => {
  const NAMESPACE = 'Ca2vdmTest';
  const deadChunk = () => sqsEvent([JSON.stringify({ job: 'vid_1', tenant: 't1', chunk: 1 })]);

  test('chunk-dead-letter counts the job it fails as JobsEnded{status: failed}, once: a redelivery adds none', async () => {
    s3.on(GetObjectCommand, { Key: jobKey('t1', 'vid_1') }).resolves(body(storedJob()));
    const first = await captureEmf(NAMESPACE, () => handlers['chunk-dead-letter'](deadChunk(), lambdaContext()));
    expect(first.metrics).toEqual([
      { namespace: NAMESPACE, name: 'JobsEnded', unit: 'Count', value: 1, dimensions: { service: 'ca2vdm', status: 'failed' } },
    ]);
    const failed = storedJob({ status: 'failed', error: { code: 'max_receives', message: 'dead' } });
    s3.on(GetObjectCommand, { Key: jobKey('t1', 'vid_1') }).resolves(body(failed));
    const again = await captureEmf(NAMESPACE, () => handlers['chunk-dead-letter'](deadChunk(), lambdaContext()));
    expect(again.metrics).toEqual([]);
    // The completed event still goes out again (deduplicated by the queue).
    expect(sqs.commandCalls(SendMessageCommand)).toHaveLength(2);
  });

  test('webhook-dead-letter records the failure on the job and counts one WebhookFailures', async () => {
    const msg = { id: 'msg_dead', type: 'completed', job_id: 'vid_1', tenant: 't1', created_at: '2030-01-01T00:00:00.000Z', payload: { job: storedJob() }, attempt: 8 };
    const { metrics } = await captureEmf(NAMESPACE, () => handlers['webhook-dead-letter'](sqsEvent([JSON.stringify(msg)]), lambdaContext()));
    expect(s3).toHaveReceivedCommandWith(PutObjectCommand, { Key: expect.stringContaining('vid_1/webhooks/') });
    expect(metrics).toEqual([{ namespace: NAMESPACE, name: 'WebhookFailures', unit: 'Count', value: 1, dimensions: { service: 'ca2vdm' } }]);
  });

  test('deliver-webhook counts one WebhookFailures when the receiver answers 410, none for a delivered event', async () => {
    const { makeDeliverWebhookHandler } = await import('../../functions/deliver-webhook.js');
    s3.on(GetObjectCommand, { Key: webhookSecretKey('t1') }).resolves(body({ secret: 'whsec_c2VjcmV0', created_at: '2030-01-01T00:00:00.000Z' }));
    const handler = makeDeliverWebhookHandler(() => ({
      store: new S3Store({ client: new S3Client({}), bucket: 'bucket' }),
      webhookQueue: new SqsQueue({ client: new SQSClient({}), queueUrl: WEBHOOK_QUEUE }),
      policy: { requireHttps: true, allowLoopback: false },
      resolve: async () => [{ address: '93.184.216.34', family: 4 }],
      post: async (_url, headers) => ({ status: headers['webhook-id'] === 'msg_gone' ? 410 : 200 }),
    }));
    const event = (id: string) => JSON.stringify({ id, type: 'completed', job_id: 'vid_1', tenant: 't1', created_at: '2030-01-01T00:00:00.000Z', payload: { job: storedJob() }, attempt: 1 });
    const { metrics } = await captureEmf(NAMESPACE, () => handler(sqsEvent([event('msg_ok'), event('msg_gone')]), lambdaContext()));
    expect(metrics).toEqual([{ namespace: NAMESPACE, name: 'WebhookFailures', unit: 'Count', value: 1, dimensions: { service: 'ca2vdm' } }]);
    expect(s3).toHaveReceivedCommandWith(PutObjectCommand, { Key: expect.stringContaining('vid_1/webhooks/') });
  });

  test('no EMF line without POWERTOOLS_METRICS_NAMESPACE', async () => {
    s3.on(GetObjectCommand, { Key: jobKey('t1', 'vid_1') }).resolves(body(storedJob()));
    const { metrics } = await captureEmf(null, () => handlers['chunk-dead-letter'](deadChunk(), lambdaContext()));
    expect(metrics).toEqual([]);
    expect(s3).toHaveReceivedCommand(PutObjectCommand);
  });

  test('a failed record is logged by the Powertools logger as JSON with the Lambda request id', async () => {
    s3.on(GetObjectCommand, { Key: jobKey('t1', 'vid_1') }).rejects(new Error('S3 down'));
    const lines: string[] = [];
    const capture = (stream: NodeJS.WriteStream) => vi.spyOn(stream, 'write').mockImplementation(((chunk: string) => { lines.push(String(chunk)); return true; }) as never);
    const spies = [capture(process.stdout), capture(process.stderr)];
    try {
      await expect(handlers['chunk-dead-letter'](deadChunk(), lambdaContext())).rejects.toThrow(/all 1 records failed/);
    } finally {
      spies.forEach((spy) => spy.mockRestore());
    }
    const logged = lines.flatMap((l) => l.split('\n')).filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    expect(logged).toContainEqual(expect.objectContaining({
      level: 'ERROR', message: 'record failed', messageId: 'm0', error: 'Error: S3 down', function_request_id: 'req-1',
    }));
  });
});
