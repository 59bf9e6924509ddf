import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { readConfig } from './config.js';
import { Ca2vdmStack } from './stack.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const app = new App();
const stackName = (app.node.tryGetContext('stackName') as string | undefined) ?? 'Ca2vdm';
new Ca2vdmStack(app, stackName, {
  config: readConfig(app.node),
  repoRoot,
  description: 'ca2vdm: long-video generation API with GPU workers on ECS',
  // Environment-agnostic unless the CLI's profile supplies one: synth needs no credentials.
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
// The same rule pack the tests run: an unsuppressed error fails synth and deploy.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
app.synth();
