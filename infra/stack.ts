import { CfnOutput, Duration, Stack, type StackProps } from 'aws-cdk-lib';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import type { DeployConfig } from './config.js';
import { validateConfig } from './config.js';
import { Api } from './constructs/api.js';
import { Dashboard } from './constructs/dashboard.js';
import { GpuWorkers } from './constructs/gpu-workers.js';
import { Queues } from './constructs/queues.js';
import { Storage } from './constructs/storage.js';

export interface Ca2vdmStackProps extends StackProps {
  readonly config: DeployConfig;
  /** Absolute path of the repository root. */
  readonly repoRoot: string;
  /** Tests: Lambda code instead of esbuild bundling (see ApiProps.code). */
  readonly functionCode?: lambda.Code;
  /** Tests: worker image instead of building gpu-worker/Dockerfile. */
  readonly workerImage?: ecs.ContainerImage;
}

/** The whole AWS deployment: storage, queues, API, GPU workers and their dashboard, wired by grants and environment. */
export class Ca2vdmStack extends Stack {
  public readonly storage: Storage;
  public readonly queues: Queues;
  public readonly api: Api;
  public readonly workers: GpuWorkers;
  public readonly dashboard: Dashboard;

  constructor(scope: Construct, id: string, props: Ca2vdmStackProps) {
    super(scope, id, props);
    const config = validateConfig(props.config);
    const logRetention = config.retentionDays as logs.RetentionDays;

    this.storage = new Storage(this, 'Storage', { keepCacheDays: config.keepCacheDays });
    this.queues = new Queues(this, 'Queues', { chunkVisibility: Duration.minutes(5) });
    this.api = new Api(this, 'Api', {
      storage: this.storage,
      queues: this.queues,
      modelName: config.modelName,
      repoRoot: props.repoRoot,
      rateLimit: config.apiRateLimit,
      burstLimit: config.apiBurstLimit,
      quotaPerDay: config.apiQuotaPerDay,
      logRetention,
      code: props.functionCode,
    });
    this.workers = new GpuWorkers(this, 'Workers', {
      storage: this.storage,
      queues: this.queues,
      repoRoot: props.repoRoot,
      instanceType: config.instanceType,
      minWorkers: config.minWorkers,
      maxWorkers: config.maxWorkers,
      scaleInIdleMinutes: config.scaleInIdleMinutes,
      modelName: config.modelName,
      logRetention,
      image: props.workerImage,
    });
    this.dashboard = new Dashboard(this, 'Dashboard', { alarms: this.queues.alarms });

    new CfnOutput(this, 'ApiUrl', { value: this.api.restApi.url, description: 'Base URL; routes start with v1/' });
    new CfnOutput(this, 'Bucket', { value: this.storage.bucket.bucketName });
    new CfnOutput(this, 'ChunkQueueUrl', { value: this.queues.chunkQueue.queueUrl });
    new CfnOutput(this, 'WebhookQueueUrl', { value: this.queues.webhookQueue.queueUrl });
    new CfnOutput(this, 'ApiKeyId', { value: this.api.apiKey.keyId });
    new CfnOutput(this, 'GetApiKeyCommand', {
      description: 'Prints the value of the first API key (send it as the x-api-key header)',
      value: `aws apigateway get-api-key --api-key ${this.api.apiKey.keyId} --include-value --query value --output text --region ${this.region}`,
    });
    new CfnOutput(this, 'DashboardName', { value: this.dashboard.dashboard.dashboardName });
    new CfnOutput(this, 'UsagePlanId', { value: this.api.usagePlan.usagePlanId, description: 'Add further tenant keys to this plan' });
  }
}
