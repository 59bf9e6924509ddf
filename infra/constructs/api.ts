import * as fs from 'node:fs';
import * as path from 'node:path';
import { CustomResource, Duration } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { acknowledge, arnFinding } from '../nag.js';
import { DEFAULT_API_CONFIG } from '../../shared/api/config.js';
import { apiGatewayRequestModel } from '../../shared/api/openapi.js';
import { CLOUD_ROUTES, pathParameters } from '../../shared/api/routes.js';
import { parseManifest } from '../../shared/model/manifest.js';
import { DEFAULT_STALL_AFTER_SEC } from '../../shared/jobs/reaper.js';
import { METRICS_NAMESPACE, SERVICE_NAME } from '../../shared/observability/metrics.js';
import type { Queues } from './queues.js';
import type { PrefixGrant, Storage } from './storage.js';

/** Handler files (each exports `handler`), relative to the repository root. */
export const FUNCTION_ENTRIES = {
  createVideo: 'functions/create-video.ts',
  getVideo: 'functions/get-video.ts',
  getVideoStream: 'functions/get-video-stream.ts',
  getPage: 'functions/get-page.ts',
  getOpenApi: 'functions/get-openapi.ts',
  createUpload: 'functions/uploads.ts',
  extendVideo: 'functions/extend-video.ts',
  listVideos: 'functions/list-videos.ts',
  cancelVideo: 'functions/cancel-video.ts',
  webhookSecret: 'functions/webhook-secret.ts',
  deliverWebhook: 'functions/deliver-webhook.ts',
  chunkDeadLetter: 'functions/chunk-dead-letter.ts',
  webhookDeadLetter: 'functions/webhook-dead-letter.ts',
  reapStalledJobs: 'functions/reap-stalled-jobs.ts',
  /** Custom resource that creates the first tenant's key at deploy time (infra-owned). */
  firstApiKey: 'infra/provision/first-api-key.ts',
} as const;
export type FunctionName = keyof typeof FUNCTION_ENTRIES;

/** Where the bundling hook puts the model manifest inside every function package. */
export const MODEL_MANIFEST_PATH = '/var/task/model/manifest.json';

/** Key patterns of the storage layout (docs/design.md, shared/api/keys.ts, shared/auth, shared/webhooks). */
const JOBS = 'jobs/*';
const INDEX = 'index/*';
const API_KEYS = 'auth/keys/*';
const TENANTS = 'tenants/*';
const WEBHOOK_FAILURES = 'jobs/*/*/webhooks/*';
const UPLOADS = 'uploads/*';
const ACTIVE = 'active/*';

/** Each function's bucket access: least privilege by key pattern. */
const BUCKET_ACCESS: Record<FunctionName, PrefixGrant> = {
  createVideo: { read: [API_KEYS, JOBS, UPLOADS], write: [JOBS, INDEX, ACTIVE] },
  getVideo: { read: [API_KEYS, JOBS] },
  getVideoStream: { read: [API_KEYS, JOBS] },
  getPage: {},
  getOpenApi: {},
  // Writes the upload's record and signs the PUT of its PNG (a presigned URL carries the signer's rights).
  createUpload: { read: [API_KEYS], write: [UPLOADS] },
  extendVideo: { read: [API_KEYS, JOBS], write: [JOBS, INDEX, ACTIVE] },
  listVideos: { read: [API_KEYS, JOBS, INDEX] },
  cancelVideo: { read: [API_KEYS, JOBS], write: [JOBS] },
  webhookSecret: { read: [API_KEYS, TENANTS], write: [TENANTS] },
  // Signs with the tenant's secret, renders the job (presigned links) and notes failed deliveries.
  deliverWebhook: { read: [TENANTS, JOBS], write: [TENANTS, WEBHOOK_FAILURES] },
  chunkDeadLetter: { read: [JOBS], write: [JOBS] },
  webhookDeadLetter: { read: [WEBHOOK_FAILURES], write: [WEBHOOK_FAILURES] },
  // Lists the markers of unfinished jobs, reads their records, deletes the markers of finished ones.
  reapStalledJobs: { read: [JOBS, ACTIVE], delete: [ACTIVE] },
  firstApiKey: { write: [API_KEYS] },
};

export interface ApiProps {
  readonly storage: Storage;
  readonly queues: Queues;
  /** Folder under `model/artifacts/` whose manifest.json is bundled with every function. */
  readonly modelName: string;
  /** Absolute path of the repository root (entries, lock file and model artifacts live there). */
  readonly repoRoot: string;
  /** Per-key throttle and daily quota of the usage plan. */
  readonly rateLimit: number;
  readonly burstLimit: number;
  readonly quotaPerDay: number;
  /** @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Replaces esbuild bundling with this code for every function (tests: `Code.fromInline`), so the
   * stack synthesizes before or without the handler files. @default NodejsFunction bundling of FUNCTION_ENTRIES
   */
  readonly code?: lambda.Code;
  /** Tenant of the API key created at deploy time. @default 'default' */
  readonly firstTenant?: string;
}

/** The public REST API: API Gateway (keys, usage plan, validation) in front of one Lambda per route, and the queue consumers. */
export class Api extends Construct {
  public readonly restApi: apigw.RestApi;
  public readonly apiKey: apigw.IApiKey;
  public readonly usagePlan: apigw.UsagePlan;
  public readonly functions: Record<FunctionName, lambda.Function>;

  constructor(scope: Construct, id: string, private readonly props: ApiProps) {
    super(scope, id);
    for (const [name, v] of [['rateLimit', props.rateLimit], ['burstLimit', props.burstLimit], ['quotaPerDay', props.quotaPerDay]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer, got ${v}`);
    }
    const retention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const { bucket } = props.storage;
    const { chunkQueue, webhookQueue, chunkDeadLetterQueue, webhookDeadLetterQueue } = props.queues;

    const make = (name: FunctionName, opts: { timeout: Duration; memorySize: number }): lambda.Function => {
      const fnProps = {
        runtime: lambda.Runtime.NODEJS_22_X,
        // No native module reaches the handlers (onnxruntime-node is worker-only), so Graviton is safe and cheaper.
        architecture: lambda.Architecture.ARM_64,
        timeout: opts.timeout,
        memorySize: opts.memorySize,
        tracing: lambda.Tracing.ACTIVE,
        logGroup: new logs.LogGroup(this, `${pascal(name)}Logs`, { retention }),
        environment: {
          // Every function gets the same wiring so a shared dependency factory may read all of it;
          // what a function may actually do is decided by its grants below.
          BUCKET: bucket.bucketName,
          CHUNK_QUEUE_URL: chunkQueue.queueUrl,
          WEBHOOK_QUEUE_URL: webhookQueue.queueUrl,
          MODEL_MANIFEST_PATH,
          POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
          POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
          POWERTOOLS_LOG_LEVEL: 'INFO',
          NODE_OPTIONS: '--enable-source-maps',
        },
      } satisfies Partial<nodejs.NodejsFunctionProps>;
      const fn = props.code
        ? new lambda.Function(this, pascal(name), { ...fnProps, code: props.code, handler: 'index.handler' })
        : new nodejs.NodejsFunction(this, pascal(name), {
            ...fnProps,
            entry: path.join(props.repoRoot, FUNCTION_ENTRIES[name]),
            handler: 'handler',
            projectRoot: props.repoRoot,
            depsLockFilePath: path.join(props.repoRoot, 'package-lock.json'),
            bundling: {
              forceDockerBundling: false,
              format: nodejs.OutputFormat.ESM,
              target: 'node22',
              // ESM output still meets CommonJS dependencies that call require().
              banner: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
              mainFields: ['module', 'main'],
              // Ship the SDK version the code was tested with rather than the runtime's.
              bundleAwsSDK: true,
              minify: true,
              sourceMap: true,
              commandHooks: {
                beforeBundling: () => [],
                beforeInstall: () => [],
                // The manifest is small JSON; bundling it as a file keeps the handlers' loader the same as the worker's.
                afterBundling: (inputDir: string, outputDir: string) => [
                  `mkdir -p "${outputDir}/model"`,
                  `cp "${inputDir}/model/artifacts/${props.modelName}/manifest.json" "${outputDir}/model/manifest.json"`,
                  // The page function carries the page and hls.js as files (PAGE_DIR).
                  ...(name === 'getPage'
                    ? [
                        `mkdir -p "${outputDir}/web"`,
                        `cp "${inputDir}/web/index.html" "${inputDir}/node_modules/hls.js/dist/hls.min.js" "${outputDir}/web/"`,
                      ]
                    : []),
                ],
              },
            },
          });
      // The page function touches no object at all.
      if (Object.keys(BUCKET_ACCESS[name]).length > 0) props.storage.grantPrefixes(fn, BUCKET_ACCESS[name]);
      return fn;
    };

    const http = { timeout: Duration.seconds(29), memorySize: 512 };
    const consumer = { timeout: Duration.seconds(30), memorySize: 512 };
    this.functions = {
      // More memory = more CPU for decoding and checking the starting PNG frames.
      createVideo: make('createVideo', { ...http, memorySize: 1024 }),
      getVideo: make('getVideo', http),
      getVideoStream: make('getVideoStream', http),
      getPage: make('getPage', { ...http, memorySize: 256 }),
      getOpenApi: make('getOpenApi', { ...http, memorySize: 256 }),
      createUpload: make('createUpload', http),
      extendVideo: make('extendVideo', http),
      listVideos: make('listVideos', http),
      cancelVideo: make('cancelVideo', http),
      webhookSecret: make('webhookSecret', http),
      deliverWebhook: make('deliverWebhook', consumer),
      chunkDeadLetter: make('chunkDeadLetter', consumer),
      webhookDeadLetter: make('webhookDeadLetter', consumer),
      reapStalledJobs: make('reapStalledJobs', { timeout: Duration.minutes(5), memorySize: 512 }),
      firstApiKey: make('firstApiKey', { timeout: Duration.seconds(60), memorySize: 256 }),
    };
    const f = this.functions;
    // The API limits the handlers enforce, from the same defaults the request model below uses.
    f.getPage.addEnvironment('PAGE_DIR', '/var/task/web');
    f.createVideo.addEnvironment('API_MAX_FRAMES', String(DEFAULT_API_CONFIG.maxFrames));
    f.createVideo.addEnvironment('API_MAX_STEPS', String(DEFAULT_API_CONFIG.maxSteps));
    f.createVideo.addEnvironment('API_MAX_INIT_FRAMES', String(DEFAULT_API_CONFIG.maxInitFrames));

    // Queue wiring: the URL env vars above plus exactly these grants.
    chunkQueue.grantSendMessages(f.createVideo);
    chunkQueue.grantSendMessages(f.extendVideo);
    webhookQueue.grantSendMessages(f.chunkDeadLetter);
    // The dispatcher re-sends an event with a delay to retry it later (and consumes the queue).
    webhookQueue.grantSendMessages(f.deliverWebhook);
    f.deliverWebhook.addEventSource(new SqsEventSource(webhookQueue, { batchSize: 10, reportBatchItemFailures: true }));
    f.chunkDeadLetter.addEventSource(new SqsEventSource(chunkDeadLetterQueue, { batchSize: 10, reportBatchItemFailures: true }));
    f.webhookDeadLetter.addEventSource(new SqsEventSource(webhookDeadLetterQueue, { batchSize: 10, reportBatchItemFailures: true }));
    // The reaper re-sends the next chunk task of a job that stopped moving (shared/jobs/reaper.ts).
    chunkQueue.grantSendMessages(f.reapStalledJobs);
    f.reapStalledJobs.addEnvironment('STALL_AFTER_SEC', String(DEFAULT_STALL_AFTER_SEC));
    new events.Rule(this, 'ReapStalledJobsSchedule', {
      description: 'Finds unfinished jobs with no progress and queues their next chunk again',
      schedule: events.Schedule.rate(Duration.minutes(5)),
      targets: [new targets.LambdaFunction(f.reapStalledJobs)],
    });

    // REST API ----------------------------------------------------------------------------------
    const accessLogs = new logs.LogGroup(this, 'AccessLogs', { retention });
    this.restApi = new apigw.RestApi(this, 'RestApi', {
      description: 'ca2vdm long-video generation API',
      endpointConfiguration: { types: [apigw.EndpointType.REGIONAL] },
      apiKeySourceType: apigw.ApiKeySourceType.HEADER,
      // Access logs need the account-wide API Gateway role; kept on delete since other APIs may use it.
      cloudWatchRole: true,
      deployOptions: {
        stageName: 'prod',
        tracingEnabled: true,
        loggingLevel: apigw.MethodLoggingLevel.ERROR,
        dataTraceEnabled: false,
        metricsEnabled: true,
        accessLogDestination: new apigw.LogGroupLogDestination(accessLogs),
        accessLogFormat: apigw.AccessLogFormat.jsonWithStandardFields(),
        // Stage-wide ceiling above the per-key plan, so one stage cannot exhaust the account's Lambda concurrency.
        throttlingRateLimit: Math.max(props.rateLimit * 10, 50),
        throttlingBurstLimit: Math.max(props.burstLimit * 10, 100),
      },
    });
    const validateBody = this.restApi.addRequestValidator('ValidateBody', { validateRequestBody: true, validateRequestParameters: true });
    const validateParams = this.restApi.addRequestValidator('ValidateParams', { validateRequestParameters: true });
    const manifestPath = path.join(props.repoRoot, 'model', 'artifacts', props.modelName, 'manifest.json');
    const manifest = parseManifest(JSON.parse(fs.readFileSync(manifestPath, 'utf8')), manifestPath);
    const createModel = this.restApi.addModel('CreateVideoRequest', {
      contentType: 'application/json',
      // The create request's own zod schema (shared/api/request.ts), in API Gateway's JSON Schema draft 4.
      schema: { schema: apigw.JsonSchemaVersion.DRAFT4, ...apiGatewayRequestModel(manifest, DEFAULT_API_CONFIG) } as apigw.JsonSchema,
    });

    // One method per route of the table (shared/api/routes.ts), integrated with the function of its handler's name.
    const bodyModels = { createVideo: createModel };
    for (const route of CLOUD_ROUTES) {
      const requestParameters = Object.fromEntries([
        ...pathParameters(route.path).map((p) => [`method.request.path.${p}`, true]),
        ...('query' in route ? route.query : []).map((q) => [`method.request.querystring.${q}`, false]),
        ...('headers' in route ? route.headers : []).map((h) => [`method.request.header.${h}`, false]),
      ]);
      const hasParams = Object.keys(requestParameters).length > 0;
      this.restApi.root.resourceForPath(route.path).addMethod(route.method, new apigw.LambdaIntegration(f[route.handler], { proxy: true }), {
        apiKeyRequired: !('key' in route),
        ...('body' in route
          ? { requestValidator: validateBody, requestModels: { 'application/json': bodyModels[route.body] } }
          : hasParams ? { requestValidator: validateParams } : {}),
        ...(hasParams ? { requestParameters } : {}),
      });
    }

    // Keys and quotas: one plan, one initial key; more tenants = more keys on the same plan (docs/deploy.md).
    this.usagePlan = this.restApi.addUsagePlan('UsagePlan', {
      description: 'Per-key throttle and daily quota',
      throttle: { rateLimit: props.rateLimit, burstLimit: props.burstLimit },
      quota: { limit: props.quotaPerDay, period: apigw.Period.DAY },
      apiStages: [{ api: this.restApi, stage: this.restApi.deploymentStage }],
    });
    // The handlers accept only keys whose hash is in the bucket, so the first key is made by a custom
    // resource that registers it there and passes the value (NoEcho) to API Gateway.
    const firstKey = new CustomResource(this, 'FirstApiKeyResource', {
      serviceToken: f.firstApiKey.functionArn,
      resourceType: 'Custom::Ca2vdmApiKey',
      properties: { Bucket: bucket.bucketName, Tenant: props.firstTenant ?? 'default' },
    });
    this.apiKey = this.restApi.addApiKey('FirstKey', {
      value: firstKey.getAttString('Value'),
      description: `Key of tenant ${props.firstTenant ?? 'default'}; read it with get-api-key --include-value`,
    });
    this.usagePlan.addApiKey(this.apiKey);

    this.suppressNag();
  }

  private suppressNag(): void {
    const { bucket } = this.props.storage;
    acknowledge(this.restApi, [
      { id: 'AwsSolutions-APIG3', reason: 'No WAF: per-key usage-plan throttle and quota plus request validation bound abuse; WAF is an operator add-on with its own cost.' },
      { id: 'AwsSolutions-APIG4', reason: 'Callers authenticate with a per-tenant API key (usage plan) that the handlers resolve to a tenant, as the design specifies.' },
      { id: 'AwsSolutions-COG4', reason: 'Machine-to-machine API authenticated by per-tenant API keys; there are no Cognito users.' },
      { id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]', reason: 'The AWS-managed role is the documented way to let API Gateway write access logs.' },
    ]);
    for (const fn of Object.values(this.functions)) {
      acknowledge(fn, [
        { id: 'AwsSolutions-L1', reason: 'Node.js 22 is the runtime the handlers are built and tested for (esbuild target node22).' },
        { id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]', reason: "The managed policy only lets the function write its own logs." },
        { id: 'AwsSolutions-IAM5[Resource::*]', reason: 'X-Ray PutTraceSegments/PutTelemetryRecords (active tracing) have no resource type: AWS requires "*".' },
        ...[JOBS, INDEX, API_KEYS, TENANTS, WEBHOOK_FAILURES, ACTIVE, UPLOADS].map((p) => ({
          id: `AwsSolutions-IAM5[${arnFinding(bucket, `/${p}`)}]`,
          reason: `Object access limited to the ${p} key pattern of the storage layout (job ids are not known at deploy time).`,
        })),
      ]);
    }
  }

}

function pascal(name: string): string {
  return name[0].toUpperCase() + name.slice(1);
}
