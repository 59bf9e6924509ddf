/**
 * CloudFormation custom resource: creates the first tenant's API key at deploy time. The handlers
 * accept only keys registered in the bucket (`auth/keys/{sha256}.json`, shared/auth), so the key
 * API Gateway checks and the key the handlers resolve must be the same value: this function makes
 * it, registers its hash, and hands the value (NoEcho) to the AWS::ApiGateway::ApiKey resource.
 */
import { S3Client } from '@aws-sdk/client-s3';
import type { CloudFormationCustomResourceEvent, CloudFormationCustomResourceResponse } from 'aws-lambda';
import { createApiKey, hashApiKey } from '../../shared/auth/api-keys.js';
import { S3Store } from '../../shared/store/s3-store.js';

const s3 = new S3Client({});

export async function handler(event: CloudFormationCustomResourceEvent): Promise<void> {
  let response: CloudFormationCustomResourceResponse = {
    Status: 'SUCCESS',
    PhysicalResourceId: 'PhysicalResourceId' in event ? event.PhysicalResourceId : `first-api-key-${event.RequestId}`,
    StackId: event.StackId,
    RequestId: event.RequestId,
    LogicalResourceId: event.LogicalResourceId,
  };
  try {
    // Update = replace: a new key and physical id; CloudFormation then deletes the old resource.
    if (event.RequestType !== 'Delete') {
      const { Bucket, Tenant } = event.ResourceProperties as unknown as { Bucket: string; Tenant: string };
      const key = await createApiKey(new S3Store({ client: s3, bucket: Bucket }), Tenant);
      response.PhysicalResourceId = `first-api-key-${hashApiKey(key).slice(0, 16)}`;
      response.Data = { Value: key };
      response.NoEcho = true;
    }
    // Delete keeps the hash record: a deleted API Gateway key is refused before any handler runs.
  } catch (err) {
    console.error(JSON.stringify({ msg: 'first API key failed', error: String(err) }));
    response = { ...response, Status: 'FAILED', Reason: String(err).slice(0, 500) };
  }
  const body = JSON.stringify(response);
  const res = await fetch(event.ResponseURL, { method: 'PUT', body, headers: { 'content-type': '', 'content-length': String(Buffer.byteLength(body)) } });
  if (!res.ok) throw new Error(`CloudFormation response PUT answered ${res.status}`);
}
