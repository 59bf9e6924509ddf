import { Stack, Validations, type CfnElement } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/** One cdk-nag acknowledgement: the rule (or `Rule[finding]`) and a one-line reason. */
export interface NagAck {
  readonly id: string;
  readonly reason: string;
}

/** Acknowledges cdk-nag findings on `scope` and everything below it (cdk-nag v3 checks ancestors). */
export function acknowledge(scope: IConstruct, acks: readonly NagAck[]): void {
  for (const ack of acks) Validations.of(scope).acknowledge(ack);
}

/** The `Resource::` finding cdk-nag reports for a wildcard ARN built from a resource's `Arn` attribute. */
export function arnFinding(resource: IConstruct, suffix: string): string {
  const cfn = (resource.node.defaultChild ?? resource) as CfnElement;
  return `Resource::<${Stack.of(resource).getLogicalId(cfn)}.Arn>${suffix}`;
}
