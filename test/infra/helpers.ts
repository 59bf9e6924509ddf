import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { DEFAULT_CONFIG, type DeployConfig } from '../../infra/config.js';
import { Ca2vdmStack } from '../../infra/stack.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A fresh stack with inline Lambda code and a registry image: no esbuild, no Docker staging. */
export function buildStack(overrides: Partial<DeployConfig> = {}): { app: App; stack: Ca2vdmStack; template: Template } {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new Ca2vdmStack(app, 'Test', {
    config: { ...DEFAULT_CONFIG, ...overrides },
    repoRoot: REPO_ROOT,
    env: { account: '123456789012', region: 'us-east-1' },
    functionCode: lambda.Code.fromInline('export const handler = async () => ({});'),
    workerImage: ecs.ContainerImage.fromRegistry('public.ecr.aws/docker/library/busybox:latest'),
  });
  return { app, stack, template: Template.fromStack(stack) };
}
