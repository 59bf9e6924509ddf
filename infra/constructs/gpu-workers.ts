import * as fs from 'node:fs';
import * as path from 'node:path';
import { type CfnElement, Duration, IgnoreMode, Stack, Token } from 'aws-cdk-lib';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { acknowledge, arnFinding } from '../nag.js';
import type { Queues } from './queues.js';
import type { Storage } from './storage.js';
import { METRICS_NAMESPACE, SERVICE_NAME } from '../../shared/observability/metrics.js';

export interface GpuWorkersProps {
  readonly storage: Storage;
  readonly queues: Queues;
  /** Absolute path of the repository root: the Docker build context. */
  readonly repoRoot: string;
  /** x86_64 NVIDIA instance type (one GPU per instance, one worker per GPU). @default g5.xlarge */
  readonly instanceType?: string;
  /** Workers kept while idle; 0 lets the GPU fleet scale to zero. @default 0 */
  readonly minWorkers?: number;
  /** @default 4 */
  readonly maxWorkers?: number;
  /** Minutes the queue must stay below one task per worker before a worker is removed. @default 10 */
  readonly scaleInIdleMinutes?: number;
  /** How long ECS waits after SIGTERM before SIGKILL: the worker drains its chunk in flight. @default 120 seconds */
  readonly drainTimeout?: Duration;
  /** @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
  /** Memory reserved for the worker container. @default 4096 MiB */
  readonly memoryReservationMiB?: number;
  /** Folder under model/artifacts/ baked into the image. @default balls32-v1 */
  readonly modelName?: string;
  /** Replaces the image built from gpu-worker/Dockerfile (tests). @default ContainerImage.fromAsset of the repository root */
  readonly image?: ecs.ContainerImage;
  /** @default a new VPC with public subnets only in 2 AZs (no NAT gateway: nothing costs while idle) */
  readonly vpc?: ec2.IVpc;
}

/** Where the worker image finds the model (the Dockerfile copies the artifact there). */
export const WORKER_MODEL_DIR = '/app/model';

/** ECS on EC2 GPU instances: cluster, ASG capacity provider, worker service scaled on the chunk backlog. */
export class GpuWorkers extends Construct {
  public readonly vpc: ec2.IVpc;
  public readonly cluster: ecs.Cluster;
  public readonly autoScalingGroup: autoscaling.AutoScalingGroup;
  public readonly capacityProvider: ecs.AsgCapacityProvider;
  public readonly taskDefinition: ecs.Ec2TaskDefinition;
  public readonly service: ecs.Ec2Service;
  /** Chunk tasks (visible + in flight) per running worker, the metric both scaling policies use. */
  public readonly backlogPerWorker: cloudwatch.MathExpression;

  constructor(scope: Construct, id: string, props: GpuWorkersProps) {
    super(scope, id);
    const instanceType = props.instanceType ?? 'g5.xlarge';
    const minWorkers = props.minWorkers ?? 0;
    const maxWorkers = props.maxWorkers ?? 4;
    const idleMinutes = props.scaleInIdleMinutes ?? 10;
    const drainTimeout = props.drainTimeout ?? Duration.seconds(120);
    if (!/^(g4dn|g5|g6|g6e)\.[a-z0-9]+$/.test(instanceType)) throw new Error(`instanceType must be x86_64 g4dn/g5/g6/g6e, got ${instanceType}`);
    if (!Number.isInteger(minWorkers) || minWorkers < 0) throw new Error(`minWorkers must be an integer >= 0, got ${minWorkers}`);
    if (!Number.isInteger(maxWorkers) || maxWorkers < Math.max(1, minWorkers)) throw new Error(`maxWorkers must be an integer >= max(1, minWorkers), got ${maxWorkers}`);
    if (!Number.isInteger(idleMinutes) || idleMinutes < 1) throw new Error(`scaleInIdleMinutes must be a positive integer, got ${idleMinutes}`);
    const retention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const { chunkQueue, webhookQueue } = props.queues;
    const stack = Stack.of(this);

    // Network: public subnets, no inbound rule; instances reach S3/SQS/ECR over the internet gateway.
    this.vpc =
      props.vpc ??
      new ec2.Vpc(this, 'Vpc', {
        maxAzs: 2,
        natGateways: 0,
        subnetConfiguration: [{ name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 }],
        flowLogs: {
          rejected: {
            destination: ec2.FlowLogDestination.toCloudWatchLogs(new logs.LogGroup(this, 'FlowLogs', { retention })),
            trafficType: ec2.FlowLogTrafficType.REJECT,
          },
        },
      });
    const securityGroup = new ec2.SecurityGroup(this, 'InstanceSecurityGroup', {
      vpc: this.vpc,
      description: 'GPU workers: no inbound, outbound to AWS APIs and ECR',
      allowAllOutbound: true,
    });

    this.cluster = new ecs.Cluster(this, 'Cluster', { vpc: this.vpc, containerInsightsV2: ecs.ContainerInsights.ENABLED });

    // Instances -------------------------------------------------------------------------------
    const instanceRole = new iam.Role(this, 'InstanceRole', { assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com') });
    const launchTemplate = new ec2.LaunchTemplate(this, 'LaunchTemplate', {
      instanceType: new ec2.InstanceType(instanceType),
      // The ECS GPU AMI brings the NVIDIA driver and container toolkit; ECS_ENABLE_GPU_SUPPORT is preset.
      machineImage: ecs.EcsOptimizedImage.amazonLinux2(ecs.AmiHardwareType.GPU),
      userData: ec2.UserData.forLinux(),
      role: instanceRole,
      securityGroup,
      associatePublicIpAddress: true,
      // IMDSv2 only, hop limit 1: containers (bridge network, one hop further) cannot fetch the instance
      // role's credentials; they use the task role.
      requireImdsv2: true,
      httpPutResponseHopLimit: 1,
      // The CUDA image is several GB; the AMI's default root volume is tight for it plus layer extraction.
      blockDevices: [{ deviceName: '/dev/xvda', volume: ec2.BlockDeviceVolume.ebs(100, { encrypted: true, volumeType: ec2.EbsDeviceVolumeType.GP3 }) }],
    });
    this.autoScalingGroup = new autoscaling.AutoScalingGroup(this, 'Instances', {
      vpc: this.vpc,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
      launchTemplate,
      // The capacity provider owns the size: it starts at zero instances and follows the tasks' needs.
      minCapacity: 0,
      maxCapacity: maxWorkers,
    });
    this.capacityProvider = new ecs.AsgCapacityProvider(this, 'CapacityProvider', {
      autoScalingGroup: this.autoScalingGroup,
      enableManagedScaling: true,
      // Instances with a running task are not terminated by scale-in; empty ones are drained first.
      enableManagedTerminationProtection: true,
      enableManagedDraining: true,
      targetCapacityPercent: 100,
      minimumScalingStepSize: 1,
      maximumScalingStepSize: Math.max(1, maxWorkers),
      instanceWarmupPeriod: 300,
    });
    this.cluster.addAsgCapacityProvider(this.capacityProvider);

    // Task ------------------------------------------------------------------------------------
    this.taskDefinition = new ecs.Ec2TaskDefinition(this, 'WorkerTask', { networkMode: ecs.NetworkMode.BRIDGE });
    const logGroup = new logs.LogGroup(this, 'WorkerLogs', { retention });
    this.taskDefinition.addContainer('worker', {
      image: props.image ?? workerImage(props.repoRoot, props.modelName ?? 'balls32-v1'),
      gpuCount: 1,
      memoryReservationMiB: props.memoryReservationMiB ?? 4096,
      essential: true,
      // tini as PID 1 forwards SIGTERM to node; the worker then drains within stopTimeout.
      linuxParameters: new ecs.LinuxParameters(this, 'LinuxParameters', { initProcessEnabled: true }),
      stopTimeout: drainTimeout,
      logging: ecs.LogDrivers.awsLogs({ logGroup, streamPrefix: 'worker' }),
      environment: {
        STORE: 's3',
        BUCKET: props.storage.bucket.bucketName,
        CHUNK_QUEUE_URL: chunkQueue.queueUrl,
        WEBHOOK_QUEUE_URL: webhookQueue.queueUrl,
        MODEL_DIR: WORKER_MODEL_DIR,
        ORT_PROVIDER: 'cuda',
        // The worker's receive/heartbeat window: the queue's own visibility timeout, one source of truth.
        VISIBILITY_SEC: String(props.queues.chunkVisibility.toSeconds()),
        // The SDK does not read the region from instance metadata.
        AWS_REGION: stack.region,
        // The same service and namespace as the functions: one dashboard reads both (dashboard.ts).
        POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
      },
    });

    // Task role: exactly what the chunk step touches.
    const taskRole = this.taskDefinition.taskRole;
    props.storage.grantPrefixes(taskRole, { read: ['jobs/*'], write: ['jobs/*'] });
    chunkQueue.grantConsumeMessages(taskRole); // receive, delete, change visibility (heartbeat)
    chunkQueue.grantSendMessages(taskRole); // the task of the next chunk
    webhookQueue.grantSendMessages(taskRole);
    // Scale-in protection: the ECS agent endpoint calls these APIs with the task role's credentials.
    taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['ecs:UpdateTaskProtection', 'ecs:GetTaskProtection'],
        resources: [stack.formatArn({ service: 'ecs', resource: 'task', resourceName: `${this.cluster.clusterName}/*` })],
      }),
    );

    // Service ---------------------------------------------------------------------------------
    this.service = new ecs.Ec2Service(this, 'Service', {
      cluster: this.cluster,
      taskDefinition: this.taskDefinition,
      desiredCount: minWorkers,
      capacityProviderStrategies: [{ capacityProvider: this.capacityProvider.capacityProviderName, weight: 1 }],
      // A deployment stops a worker (protected ones only once their chunk is done) before starting its replacement:
      // no extra GPU instance is needed to roll out.
      minHealthyPercent: 0,
      maxHealthyPercent: 100,
      circuitBreaker: { rollback: true },
    });

    // Scaling on backlog per worker -------------------------------------------------------------
    const period = Duration.minutes(1);
    this.backlogPerWorker = new cloudwatch.MathExpression({
      label: 'Chunk tasks per running worker',
      period,
      // With no worker running, any backlog must scale out: count the missing worker as one extra task,
      // so 0 tasks reads 1 (on target, neutral) and b tasks read b + 1 (above target).
      expression: 'IF(running > 0, (visible + inflight) / running, visible + inflight + 1)',
      usingMetrics: {
        visible: chunkQueue.metricApproximateNumberOfMessagesVisible({ period, statistic: 'Maximum' }),
        inflight: chunkQueue.metricApproximateNumberOfMessagesNotVisible({ period, statistic: 'Maximum' }),
        running: new cloudwatch.Metric({
          namespace: 'ECS/ContainerInsights',
          metricName: 'RunningTaskCount',
          dimensionsMap: { ClusterName: this.cluster.clusterName, ServiceName: this.service.serviceName },
          period,
          statistic: 'Average',
        }),
      },
    });
    const taskCount = this.service.autoScaleTaskCount({ minCapacity: minWorkers, maxCapacity: maxWorkers });
    // Target: one task per worker (a job has one chunk in flight, so more workers than tasks would idle).
    // Scale out at once, by the fraction of the excess (never more than needed); the change is at least one worker.
    taskCount.scaleOnMetric('ScaleOutOnBacklog', {
      metric: this.backlogPerWorker,
      adjustmentType: appscaling.AdjustmentType.PERCENT_CHANGE_IN_CAPACITY,
      minAdjustmentMagnitude: 1,
      cooldown: Duration.minutes(1),
      evaluationPeriods: 1,
      scalingSteps: [
        { upper: 1.01, change: 0 },
        { lower: 1.01, upper: 1.5, change: 1 },
        { lower: 1.5, upper: 2, change: 50 },
        { lower: 2, upper: 3, change: 100 },
        { lower: 3, change: 200 },
      ],
    });
    // Scale in one worker at a time, only after the backlog has stayed below one task per worker for a while;
    // a worker busy with a chunk holds scale-in protection, so the idle ones go first.
    taskCount.scaleOnMetric('ScaleInWhenIdle', {
      metric: this.backlogPerWorker,
      adjustmentType: appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
      cooldown: Duration.minutes(idleMinutes),
      evaluationPeriods: idleMinutes,
      scalingSteps: [
        { upper: 0.99, change: -1 },
        { lower: 0.99, change: 0 },
      ],
    });

    this.suppressNag(props.storage, taskRole, instanceRole);
  }

  private suppressNag(storage: Storage, taskRole: iam.IRole, instanceRole: iam.Role): void {
    const stack = Stack.of(this);
    const part = (v: string, pseudo: string) => (Token.isUnresolved(v) ? `<AWS::${pseudo}>` : v);
    const cluster = stack.getLogicalId(this.cluster.node.defaultChild as CfnElement);
    acknowledge(this.autoScalingGroup, [
      { id: 'AwsSolutions-AS3', reason: 'Scaling is driven by the ECS capacity provider and watched through the queue alarms; no SNS notifications needed.' },
    ]);
    acknowledge(this.taskDefinition, [
      { id: 'AwsSolutions-ECS2', reason: 'The environment holds only resource names, URLs and settings, no secrets.' },
      { id: 'AwsSolutions-IAM5[Resource::*]', reason: 'Execution role: ecr:GetAuthorizationToken has no resource type, AWS requires "*".' },
    ]);
    acknowledge(taskRole, [
      { id: `AwsSolutions-IAM5[${arnFinding(storage.bucket, '/jobs/*')}]`, reason: 'The worker reads and writes objects only below jobs/ (job ids are not known at deploy time).' },
      {
        id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:${part(stack.region, 'Region')}:${part(stack.account, 'AccountId')}:task/<${cluster}>/*]`,
        reason: 'Task scale-in protection for tasks of this cluster only; task ids are not known at deploy time.',
      },
    ]);
    acknowledge(instanceRole, [
      { id: 'AwsSolutions-IAM5[Resource::*]', reason: 'ECS container-instance permissions CDK adds: ecs:DiscoverPollEndpoint, ecr:GetAuthorizationToken and logs have no resource type.' },
      { id: 'AwsSolutions-IAM5[Action::ecs:Submit*]', reason: 'ECS agent state reports (SubmitTaskStateChange, ...), scoped by CDK to this cluster.' },
    ]);
  }

}

/**
 * The worker image from gpu-worker/Dockerfile with the repository root as context. The context is cut to
 * what the Dockerfile copies (the same allow-list as gpu-worker/Dockerfile.dockerignore), so synth does not
 * stage node_modules and the asset hash changes only when the image's inputs do.
 */
export function workerImage(repoRoot: string, modelName: string): ecs.ContainerImage {
  const ignoreFile = path.join(repoRoot, 'gpu-worker', 'Dockerfile.dockerignore');
  const exclude = fs
    .readFileSync(ignoreFile, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  return ecs.ContainerImage.fromAsset(repoRoot, {
    file: 'gpu-worker/Dockerfile',
    buildArgs: { MODEL_NAME: modelName },
    // onnxruntime-node's CUDA provider exists only for linux/x64.
    platform: Platform.LINUX_AMD64,
    exclude,
    ignoreMode: IgnoreMode.DOCKER,
  });
}
