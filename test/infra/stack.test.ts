import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildStack } from './helpers.js';
import { CLOUD_ROUTES } from '../../shared/api/routes.js';
import { CHUNK_MAX_RECEIVES } from '../../shared/queue/constants.js';

type Statement = { Action: string | string[]; Resource: unknown; Effect: string; Condition?: unknown };

/** Every statement of the inline policy attached to the role whose logical id starts with `rolePrefix`. */
function statementsOf(template: Template, rolePrefix: string): Statement[] {
  const policies = template.findResources('AWS::IAM::Policy');
  const out: Statement[] = [];
  for (const policy of Object.values(policies)) {
    const roles = JSON.stringify(policy.Properties.Roles);
    if (roles.includes(`"${rolePrefix}`)) out.push(...(policy.Properties.PolicyDocument.Statement as Statement[]));
  }
  return out;
}
const actionsOf = (statements: Statement[]) => statements.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]));

// One stack for the read-only assertions below: building one takes seconds.
let template: Template;
beforeAll(() => {
  template = buildStack().template;
});

describe('Storage', () => {
  it('bucket is private, encrypted and TLS-only', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
  });

  it('expires tagged cache segments after keepCacheDays and aborts incomplete multipart uploads', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: Match.arrayWith([
          Match.objectLike({ TagFilters: [{ Key: 'ca2vdm-cache', Value: 'expire' }], ExpirationInDays: 7, Status: 'Enabled' }),
          Match.objectLike({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }),
        ]),
      },
    });
  });
});

describe('Queues', () => {
  it('chunk queue is FIFO without content-based dedup, sized visibility, redrive to a FIFO DLQ after 3 receives', () => {
    template.hasResourceProperties('AWS::SQS::Queue', {
      FifoQueue: true,
      ContentBasedDeduplication: false,
      DeduplicationScope: 'messageGroup',
      VisibilityTimeout: 300,
      SqsManagedSseEnabled: true,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('ChunkDeadLetterQueue'), 'Arn'] }, maxReceiveCount: CHUNK_MAX_RECEIVES },
    });
  });

  it('webhook queue is standard with a DLQ after 8 receives', () => {
    template.hasResourceProperties('AWS::SQS::Queue', {
      FifoQueue: Match.absent(),
      VisibilityTimeout: 180,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('WebhookDeadLetterQueue'), 'Arn'] }, maxReceiveCount: 8 },
    });
  });

  it('every queue is encrypted and denies non-TLS access', () => {
    const queues = template.findResources('AWS::SQS::Queue');
    expect(Object.keys(queues)).toHaveLength(4);
    for (const q of Object.values(queues)) expect(q.Properties.SqsManagedSseEnabled).toBe(true);
    template.resourceCountIs('AWS::SQS::QueuePolicy', 4);
  });

  it('alarms on dead letters (received and depth) and on the age of the oldest chunk task', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'ApproximateAgeOfOldestMessage', Threshold: 1200 });
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm', { Properties: { Namespace: 'AWS/SQS' } }));
    const names = alarms.map((a) => a.Properties.MetricName).sort();
    expect(names).toEqual([
      'ApproximateAgeOfOldestMessage',
      'ApproximateNumberOfMessagesVisible',
      'ApproximateNumberOfMessagesVisible',
      'NumberOfMessagesReceived',
      'NumberOfMessagesReceived',
    ]);
  });
});

describe('Api', () => {
  it('every function runs Node 22 on arm64 with tracing, Powertools and the wiring env', () => {
    const fns = template.findResources('AWS::Lambda::Function');
    expect(Object.keys(fns)).toHaveLength(15);
    for (const fn of Object.values(fns)) {
      expect(fn.Properties.Runtime).toBe('nodejs22.x');
      expect(fn.Properties.Architectures).toEqual(['arm64']);
      expect(fn.Properties.TracingConfig).toEqual({ Mode: 'Active' });
      expect(Object.keys(fn.Properties.Environment.Variables)).toEqual(
        expect.arrayContaining(['BUCKET', 'CHUNK_QUEUE_URL', 'WEBHOOK_QUEUE_URL', 'MODEL_MANIFEST_PATH', 'POWERTOOLS_SERVICE_NAME']),
      );
      expect(fn.Properties.Environment.Variables.MODEL_MANIFEST_PATH).toBe('/var/task/model/manifest.json');
    }
  });

  it('the stalled-job reaper runs every 5 minutes and may send chunk tasks', () => {
    template.hasResourceProperties('AWS::Events::Rule', Match.objectLike({ ScheduleExpression: 'rate(5 minutes)' }));
    const reaper = Object.entries(template.findResources('AWS::Lambda::Function')).find(([id]) => id.includes('ReapStalledJobs'));
    expect(reaper?.[1].Properties.Environment.Variables.STALL_AFTER_SEC).toBe('600');
  });

  it('the three SQS consumers report partial batch failures', () => {
    const mappings = Object.values(template.findResources('AWS::Lambda::EventSourceMapping'));
    expect(mappings).toHaveLength(3);
    for (const m of mappings) expect(m.Properties.FunctionResponseTypes).toEqual(['ReportBatchItemFailures']);
  });

  it('every API route requires an API key; only the page, its script and the OpenAPI document do not', () => {
    const methods = Object.values(template.findResources('AWS::ApiGateway::Method')).filter((m) => m.Properties.HttpMethod !== 'OPTIONS');
    expect(methods.map((m) => m.Properties.HttpMethod).sort()).toEqual(['GET', 'GET', 'GET', 'GET', 'GET', 'GET', 'GET', 'POST', 'POST', 'POST', 'POST']);
    const open = methods.filter((m) => m.Properties.ApiKeyRequired !== true);
    expect(open).toHaveLength(3);
    const fnIds = Object.keys(template.findResources('AWS::Lambda::Function'));
    const openFns = fnIds.filter((id) => id.includes('GetPage') || id.includes('GetOpenApi'));
    expect(openFns).toHaveLength(2);
    for (const m of open) expect(openFns.some((id) => JSON.stringify(m.Properties.Integration.Uri).includes(id))).toBe(true);
  });

  it('API Gateway serves exactly the cloud routes of the route table, each with the function named by its handler id', () => {
    // Resource paths from PathPart and ParentId; the root is the RestApi's RootResourceId.
    const resources = template.findResources('AWS::ApiGateway::Resource');
    const pathOf = (ref: unknown): string => {
      const id = (ref as { Ref?: string }).Ref;
      if (!id) return '';
      const r = resources[id].Properties;
      return `${pathOf(r.ParentId)}/${r.PathPart}`;
    };
    const functionIds = Object.keys(template.findResources('AWS::Lambda::Function'));
    const served = Object.values(template.findResources('AWS::ApiGateway::Method')).map((m) => {
      const uri = JSON.stringify(m.Properties.Integration.Uri);
      const fn = functionIds.find((id) => uri.includes(`"${id}"`));
      return `${m.Properties.HttpMethod} ${pathOf(m.Properties.ResourceId) || '/'} ${fn}`;
    });
    const expected = CLOUD_ROUTES.map((r) => {
      const fn = functionIds.find((id) => id.startsWith(`Api${r.handler[0].toUpperCase()}${r.handler.slice(1)}`) && !id.includes('ServiceRole'));
      return `${r.method} ${r.path} ${fn}`;
    });
    expect(served.sort()).toEqual(expected.sort());
  });

  it('POST /v1/videos validates its body against a size-limited model', () => {
    template.hasResourceProperties('AWS::ApiGateway::Model', {
      ContentType: 'application/json',
      Schema: Match.objectLike({
        required: ['frames'],
        properties: Match.objectLike({
          frames: { type: 'integer', minimum: 1, maximum: 4096 },
          // The serving model's P_max (12) bounds the starting frames below the config's 64, as the handler does.
          init_frames: Match.objectLike({ type: 'array', maxItems: 12 }),
          webhook: Match.objectLike({ type: 'string', maxLength: 2048 }),
        }),
      }),
    });
    template.hasResourceProperties('AWS::ApiGateway::Method', {
      HttpMethod: 'POST',
      RequestValidatorId: Match.anyValue(),
      RequestModels: { 'application/json': Match.anyValue() },
    });
  });

  it('usage plan throttles and caps each key per day; the first key is on it', () => {
    template.hasResourceProperties('AWS::ApiGateway::UsagePlan', {
      Throttle: { RateLimit: 10, BurstLimit: 20 },
      Quota: { Limit: 10000, Period: 'DAY' },
    });
    template.resourceCountIs('AWS::ApiGateway::UsagePlanKey', 1);
    template.hasResourceProperties('AWS::ApiGateway::ApiKey', { Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('FirstApiKeyResource'), 'Value'] } });
  });

  it('stage has access logs and tracing', () => {
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      StageName: 'prod',
      TracingEnabled: true,
      AccessLogSetting: Match.objectLike({ DestinationArn: Match.anyValue() }),
    });
  });
});

describe('least privilege', () => {
  it('cancel-video writes only the job record: no queue access', () => {
    const actions = actionsOf(statementsOf(template, 'ApiCancelVideoServiceRole'));
    expect(actions).toEqual(expect.arrayContaining(['s3:GetObject', 's3:PutObject']));
    expect(actions.some((a) => /^sqs:/.test(a))).toBe(false);
  });

  it('get-video may only read: no put, no queue access', () => {
    const actions = actionsOf(statementsOf(template, 'ApiGetVideoServiceRole'));
    expect(actions).toEqual(expect.arrayContaining(['s3:GetObject', 's3:ListBucket']));
    expect(actions.some((a) => /^s3:Put|^s3:Delete|^sqs:/.test(a))).toBe(false);
  });

  it('create-video sends only to the chunk queue and writes only jobs/* and index/*', () => {
    const statements = statementsOf(template, 'ApiCreateVideoServiceRole');
    const sqs = statements.filter((s) => actionsOf([s]).some((a) => a.startsWith('sqs:')));
    expect(sqs).toHaveLength(1);
    expect(JSON.stringify(sqs[0].Resource)).toMatch(/QueuesChunkQueue(?!.*DeadLetter)/);
    expect(actionsOf(sqs)).not.toContain('sqs:ReceiveMessage');
    const put = statements.find((s) => actionsOf([s]).includes('s3:PutObject'))!;
    expect(JSON.stringify(put.Resource)).toContain('/jobs/*');
    expect(JSON.stringify(put.Resource)).toContain('/index/*');
    expect(JSON.stringify(put.Resource)).not.toContain('auth/');
  });

  it('webhook-dead-letter writes only the jobs/*/*/webhooks/* records', () => {
    const put = statementsOf(template, 'ApiWebhookDeadLetterServiceRole').find((s) => actionsOf([s]).includes('s3:PutObject'))!;
    expect(JSON.stringify(put.Resource)).toMatch(/"\/jobs\/\*\/\*\/webhooks\/\*"/);
  });

  it('no statement grants "*" except X-Ray (Lambda), ECR auth (execution role) and the ECS agent (instances)', () => {
    const policies = template.findResources('AWS::IAM::Policy');
    for (const [id, policy] of Object.entries(policies)) {
      for (const s of policy.Properties.PolicyDocument.Statement as Statement[]) {
        if (s.Resource !== '*') continue;
        const actions = actionsOf([s]);
        const allowed =
          actions.every((a) => a.startsWith('xray:')) ||
          actions.every((a) => a === 'ecr:GetAuthorizationToken') ||
          (id.startsWith('WorkersInstanceRole') && actions.every((a) => /^(ecs|ecr|logs):/.test(a)));
        expect(allowed, `${id}: ${actions.join(',')}`).toBe(true);
      }
    }
  });

  it('worker task role: jobs/* objects, chunk queue consume+send, webhook send, task protection on this cluster', () => {
    const statements = statementsOf(template, 'WorkersWorkerTaskTaskRole');
    const actions = actionsOf(statements);
    expect(actions).toEqual(
      expect.arrayContaining(['s3:GetObject', 's3:PutObject', 'sqs:ReceiveMessage', 'sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:SendMessage']),
    );
    const protection = statements.find((s) => actionsOf([s]).includes('ecs:UpdateTaskProtection'))!;
    expect(actionsOf([protection])).toEqual(['ecs:UpdateTaskProtection', 'ecs:GetTaskProtection']);
    expect(JSON.stringify(protection.Resource)).toMatch(/:task\/.*WorkersCluster.*\/\*/);
    const s3 = statements.filter((s) => actionsOf([s]).some((a) => a.startsWith('s3:') && a !== 's3:ListBucket'));
    for (const s of s3) expect(JSON.stringify(s.Resource)).toMatch(/"\/jobs\/\*"\]/);
  });
});

describe('GpuWorkers', () => {
  it('instances use the ECS GPU-optimized AMI, IMDSv2 with hop limit 1 and an encrypted root volume', () => {
    const params = template.toJSON().Parameters as Record<string, { Default: string }>;
    expect(Object.values(params).some((p) => p.Default === '/aws/service/ecs/optimized-ami/amazon-linux-2/gpu/recommended/image_id')).toBe(true);
    template.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({
        InstanceType: 'g5.xlarge',
        MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 1 },
        BlockDeviceMappings: [Match.objectLike({ Ebs: Match.objectLike({ Encrypted: true, VolumeSize: 100 }) })],
      }),
    });
  });

  it('ASG capacity provider with managed scaling and termination protection, starting from zero instances', () => {
    template.hasResourceProperties('AWS::AutoScaling::AutoScalingGroup', { MinSize: '0', MaxSize: '4' });
    template.hasResourceProperties('AWS::ECS::CapacityProvider', {
      AutoScalingGroupProvider: Match.objectLike({
        ManagedScaling: Match.objectLike({ Status: 'ENABLED', TargetCapacity: 100 }),
        ManagedTerminationProtection: 'ENABLED',
      }),
    });
  });

  it('task reserves one GPU, drains within stopTimeout, logs to CloudWatch and gets the worker env', () => {
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({
          ResourceRequirements: [{ Type: 'GPU', Value: '1' }],
          StopTimeout: 120,
          LinuxParameters: { InitProcessEnabled: true },
          LogConfiguration: Match.objectLike({ LogDriver: 'awslogs' }),
          Environment: Match.arrayWith([
            { Name: 'STORE', Value: 's3' },
            Match.objectLike({ Name: 'BUCKET' }),
            Match.objectLike({ Name: 'CHUNK_QUEUE_URL' }),
            Match.objectLike({ Name: 'WEBHOOK_QUEUE_URL' }),
            { Name: 'MODEL_DIR', Value: '/app/model' },
            { Name: 'ORT_PROVIDER', Value: 'cuda' },
            { Name: 'VISIBILITY_SEC', Value: '300' },
          ]),
        }),
      ],
    });
    template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
  });

  it('service scales on backlog per worker via metric math, from zero, without CPU scaling', () => {
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: 0, MaxCapacity: 4, ScalableDimension: 'ecs:service:DesiredCount' });
    const policies = Object.values(template.findResources('AWS::ApplicationAutoScaling::ScalingPolicy'));
    expect(policies).toHaveLength(2);
    for (const p of policies) expect(p.Properties.PolicyType).toBe('StepScaling');
    const scalingAlarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).filter((a) => a.Properties.Metrics);
    expect(scalingAlarms).toHaveLength(2);
    for (const alarm of scalingAlarms) {
      const metrics = alarm.Properties.Metrics as { Id: string; Expression?: string; MetricStat?: { Metric: { MetricName: string } } }[];
      expect(metrics.find((m) => m.Expression)?.Expression).toContain('(visible + inflight) / running');
      expect(metrics.flatMap((m) => (m.MetricStat ? [m.MetricStat.Metric.MetricName] : [])).sort()).toEqual([
        'ApproximateNumberOfMessagesNotVisible',
        'ApproximateNumberOfMessagesVisible',
        'RunningTaskCount',
      ]);
    }
    expect(JSON.stringify(template.toJSON())).not.toMatch(/CPUUtilization/);
  });

  it('minWorkers and maxWorkers come from config', () => {
    const t = buildStack({ minWorkers: 1, maxWorkers: 8 }).template;
    t.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: 1, MaxCapacity: 8 });
    t.hasResourceProperties('AWS::ECS::Service', { DesiredCount: 1 });
  });
});

describe('outputs', () => {
  it('exposes the API URL, bucket, queue URLs and how to read the API key', () => {
    for (const name of ['ApiUrl', 'Bucket', 'ChunkQueueUrl', 'WebhookQueueUrl', 'ApiKeyId', 'GetApiKeyCommand', 'UsagePlanId']) {
      template.hasOutput(name, Match.anyValue());
    }
    const cmd = JSON.stringify(template.toJSON().Outputs.GetApiKeyCommand.Value);
    expect(cmd).toContain('aws apigateway get-api-key --api-key ');
    expect(cmd).toContain('--include-value');
  });
});
