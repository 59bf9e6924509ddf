// Embedded AWS emulators on loopback with random ports, for the adapter contract tests.
import { promises as fs } from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { createSqsServer } from 'local-aws-sqs';
import S3rver from 's3rver';

const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface S3Emulator {
  client: S3Client;
  bucket: string;
  close(): Promise<void>;
}

export async function startS3(bucket = 'test-bucket'): Promise<S3Emulator> {
  const directory = await fs.mkdtemp(path.join(os.tmpdir(), 's3rver-'));
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket }] });
  const { port } = (await server.run()) as AddressInfo;
  const client = new S3Client({
    region: 'us-east-1',
    endpoint: `http://127.0.0.1:${port}`,
    forcePathStyle: true, // s3rver cannot resolve virtual-host bucket names on 127.0.0.1
    credentials,
  });
  return {
    client,
    bucket,
    async close() {
      client.destroy();
      await server.close();
      await fs.rm(directory, { recursive: true, force: true });
    },
  };
}

export interface SqsEmulator {
  client: SQSClient;
  /** ARN of a queue by name, in the emulator's default account and region. */
  arn(name: string): string;
  close(): Promise<void>;
}

export async function startSqs(): Promise<SqsEmulator> {
  const server = await createSqsServer({ port: 0, hostname: '127.0.0.1', emulateQueueCreationLifecycle: false });
  const { port } = server.address() as AddressInfo;
  const client = new SQSClient({ region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, credentials });
  return {
    client,
    arn: (name) => `arn:aws:sqs:us-east-1:123456789012:${name}`,
    async close() {
      client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
