import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { APIGatewayProxyEvent, Context, SQSEvent } from 'aws-lambda';
import { PNG } from 'pngjs';
import { afterAll, beforeAll } from 'vitest';
import { startEmbeddedStack, type EmbeddedStack } from '../../scripts/stack.js';
import { DEFAULT_API_CONFIG, type ApiConfig } from '../../shared/api/config.js';
import { parseManifest, type Manifest } from '../../shared/model/manifest.js';
import { LocalQueue } from '../../shared/queue/local-queue.js';
import { LocalStore } from '../../shared/store/local-store.js';
import { ChunkTaskSchema, type ChunkTask } from '../../shared/schemas/chunk-task.js';

/** A valid manifest like balls32-v1's (32x32 RGB, chunks of 4, 3 labels, guidance), built without the artifact. */
export function testManifest(over: Partial<Manifest> = {}): Manifest {
  const T = 100;
  return parseManifest({
    name: 'test-model',
    format: 1,
    onnx: 'step.onnx',
    onnx_sha256: 'a'.repeat(64),
    frame: { channels: 3, height: 32, width: 32, range: [-1, 1] },
    chunk_frames: 4,
    p_max: 12,
    l_train: 16,
    depth: 2,
    heads: 2,
    head_dim: 8,
    width: 16,
    tokens_per_frame: 16,
    kv_dtype: 'float16',
    kv_layout: ['frames', 'depth', 'kv', 'batch', 'tokens', 'width'],
    cache_layout: ['depth', 'kv', 'batch', 'tokens', 'heads', 'frames', 'head_dim'],
    schedule: { type: 'cosine', train_timesteps: T, alphas_cumprod: Array.from({ length: T }, (_, i) => 0.999 - (0.99 * i) / T) },
    prediction: 'v',
    default_steps: 25,
    labels: ['1 ball', '2 balls', '3 balls'],
    null_label: 3,
    guidance: { supported: true, default: 2 },
    io: {
      inputs: { x: 'x', t: 't', label: 'label', pos: 'pos', cache: ['cache_0_k', 'cache_0_v', 'cache_1_k', 'cache_1_v'] },
      outputs: { prediction: 'out', kv: 'kv' },
    },
    ...over,
  });
}

/** Embedded mode test config: http and loopback webhooks allowed, small limits. */
export function testConfig(over: Partial<ApiConfig> = {}): ApiConfig {
  return { ...DEFAULT_API_CONFIG, maxFrames: 256, maxBodyBytes: 256 * 1024, requireHttpsWebhooks: false, allowLoopbackWebhooks: true, ...over };
}

/** A PNG of `w` x `h` filled with one colour, base64. */
export function pngBase64(w = 32, h = 32, rgb: [number, number, number] = [200, 30, 30]): string {
  const png = new PNG({ width: w, height: h });
  for (let i = 0; i < w * h; i++) png.data.set([...rgb, 255], i * 4);
  return PNG.sync.write(png).toString('base64');
}

export interface TempStack {
  dir: string;
  store: LocalStore;
  chunkQueue: LocalQueue;
  webhookQueue: LocalQueue;
  cleanup(): Promise<void>;
}

export async function tempStack(): Promise<TempStack> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ca2vdm-api-'));
  return {
    dir,
    store: new LocalStore({ root: path.join(dir, 'store') }),
    chunkQueue: new LocalQueue({ dir: path.join(dir, 'chunks') }),
    webhookQueue: new LocalQueue({ dir: path.join(dir, 'webhooks') }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** An API Gateway v1 event as the Lambda would get it. */
export function httpEvent(over: Partial<APIGatewayProxyEvent> & { json?: unknown; key?: string } = {}): APIGatewayProxyEvent {
  const { json, key, ...rest } = over;
  return {
    resource: '/',
    path: '/',
    httpMethod: 'GET',
    headers: {
      host: 'abc.execute-api.eu-west-1.amazonaws.com',
      ...(key ? { Authorization: `Bearer ${key}` } : {}),
      ...(json !== undefined ? { 'Content-Type': 'application/json' } : {}),
      ...rest.headers,
    },
    multiValueHeaders: {},
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    pathParameters: null,
    stageVariables: null,
    requestContext: { requestId: 'req-1', stage: 'prod', domainName: 'abc.execute-api.eu-west-1.amazonaws.com' } as never,
    body: json !== undefined ? JSON.stringify(json) : null,
    isBase64Encoded: false,
    ...rest,
    ...(rest.headers ? {} : {}),
  } as APIGatewayProxyEvent;
}

export function lambdaContext(): Context {
  return { awsRequestId: 'req-1', functionName: 'test', getRemainingTimeInMillis: () => 30_000 } as Context;
}

export function sqsEvent(bodies: string[]): SQSEvent {
  return {
    Records: bodies.map((body, i) => ({
      messageId: `m${i}`,
      receiptHandle: `r${i}`,
      body,
      attributes: { ApproximateReceiveCount: '1' } as never,
      messageAttributes: {},
      md5OfBody: '',
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:eu-west-1:1:q',
      awsRegion: 'eu-west-1',
    })),
  };
}

/**
 * The whole embedded stack (API server, worker with the shipped model, queues, store in a temp
 * folder) for one test file: started before its tests, closed and removed after. Read `.current`
 * inside tests.
 */
export function embeddedStackForFile(name: string): { current: EmbeddedStack; dir: string } {
  const holder = {} as { current: EmbeddedStack; dir: string };
  beforeAll(async () => {
    holder.dir = await mkdtemp(path.join(tmpdir(), `ca2vdm-${name}-`));
    holder.current = await startEmbeddedStack({ dataDir: holder.dir, port: 0 });
  });
  afterAll(async () => {
    await holder.current?.close();
    if (holder.dir) await rm(holder.dir, { recursive: true, force: true });
  });
  return holder;
}

/** The error `p` rejects with (a test fails if it resolves). */
export const rejection = (p: Promise<unknown>) =>
  p.then(() => { throw new Error('resolved'); }, (e: Error & { field?: string; cause?: unknown }) => e);

/** Every chunk task in `queue`, oldest first, each taken and deleted. */
export async function drainTasks(queue: LocalQueue): Promise<ChunkTask[]> {
  const out: ChunkTask[] = [];
  for (;;) {
    const [m] = await queue.receive({ max: 1, visibilitySec: 30 });
    if (!m) return out;
    out.push(ChunkTaskSchema.parse(JSON.parse(m.body)));
    await queue.delete(m.receiptHandle);
  }
}
