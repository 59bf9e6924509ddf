import { App, Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { beforeAll, describe, expect, it } from 'vitest';
import { Dashboard } from '../../infra/constructs/dashboard.js';
import type { Ca2vdmStack } from '../../infra/stack.js';
import { buildStack } from './helpers.js';

interface Widget {
  type: string;
  properties: { title: string; metrics?: unknown[][]; alarms?: string[] };
}

/** The dashboard body as JSON, each Ref / GetAtt written as `ref:<id>` / `arn:<id>`. */
function dashboardBody(template: Template): { widgets: Widget[] } {
  const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
  expect(dashboards).toHaveLength(1);
  const [, parts] = dashboards[0].Properties.DashboardBody['Fn::Join'] as [string, unknown[]];
  const text = parts
    .map((p) => {
      if (typeof p === 'string') return p;
      const token = p as { Ref?: string; 'Fn::GetAtt'?: [string, string] };
      return token.Ref ? `ref:${token.Ref}` : `arn:${token['Fn::GetAtt']![0]}`;
    })
    .join('');
  return JSON.parse(text);
}

/** `[namespace, name, dim, value, ..., options]` -> its parts. */
function metricLine(line: unknown[]) {
  const options = typeof line[line.length - 1] === 'object' ? (line[line.length - 1] as { stat?: string }) : {};
  const flat = line.filter((x) => typeof x === 'string') as string[];
  const dims: Record<string, string> = {};
  for (let i = 2; i + 1 < flat.length; i += 2) dims[flat[i]] = flat[i + 1];
  return { namespace: flat[0], name: flat[1], dims, stat: options.stat };
}

describe('Dashboard in the stack', () => {
  let stack: Ca2vdmStack;
  let body: { widgets: Widget[] };
  beforeAll(() => {
    const built = buildStack();
    stack = built.stack;
    body = dashboardBody(built.template);
  });
  const widget = (title: string) => {
    const found = body.widgets.find((w) => w.properties.title === title);
    expect(found, title).toBeDefined();
    return found!;
  };
  const metricsOf = (title: string) => widget(title).properties.metrics!.map(metricLine);

  it('graphs chunk seconds and queue wait from the Ca2vdm namespace with the service dimension', () => {
    expect(metricsOf('Chunk seconds')).toEqual([
      { namespace: 'Ca2vdm', name: 'ChunkSeconds', dims: { service: 'ca2vdm' }, stat: undefined },
      { namespace: 'Ca2vdm', name: 'ChunkSeconds', dims: { service: 'ca2vdm' }, stat: 'p90' },
    ]);
    expect(metricsOf('Queue wait before chunk 0').map((m) => [m.name, m.dims])).toEqual([
      ['QueueWaitSeconds', { service: 'ca2vdm' }],
      ['QueueWaitSeconds', { service: 'ca2vdm' }],
    ]);
  });

  it('graphs jobs ended summed per status: succeeded, failed, canceled', () => {
    expect(metricsOf('Jobs by final status')).toEqual(
      ['succeeded', 'failed', 'canceled'].map((status) => ({
        namespace: 'Ca2vdm', name: 'JobsEnded', dims: { service: 'ca2vdm', status }, stat: 'Sum',
      })),
    );
  });

  it('graphs webhook failures and cache rebuilds as sums', () => {
    expect(metricsOf('Webhook failures')).toEqual([{ namespace: 'Ca2vdm', name: 'WebhookFailures', dims: { service: 'ca2vdm' }, stat: 'Sum' }]);
    expect(metricsOf('Cache rebuilds')).toEqual([{ namespace: 'Ca2vdm', name: 'CacheRebuilds', dims: { service: 'ca2vdm' }, stat: 'Sum' }]);
  });

  it("shows every one of the queues' alarms in its alarm widget", () => {
    const expected = stack.queues.alarms.map((a) => `arn:${stack.getLogicalId(a.node.defaultChild as cloudwatch.CfnAlarm)}`);
    expect(expected).toHaveLength(5);
    expect(widget('Alarms').properties.alarms!.sort()).toEqual(expected.sort());
  });

  it('the functions and the worker are set to write to the namespace and service the dashboard reads', () => {
    const template = Template.fromStack(stack);
    for (const fn of Object.values(template.findResources('AWS::Lambda::Function'))) {
      const env = fn.Properties.Environment?.Variables ?? {};
      if (!env.BUCKET) continue; // custom resources' functions
      expect(env).toMatchObject({ POWERTOOLS_METRICS_NAMESPACE: 'Ca2vdm', POWERTOOLS_SERVICE_NAME: 'ca2vdm' });
    }
    const [task] = Object.values(template.findResources('AWS::ECS::TaskDefinition'));
    const env = task.Properties.ContainerDefinitions[0].Environment as { Name: string; Value: string }[];
    expect(env).toEqual(expect.arrayContaining([
      { Name: 'POWERTOOLS_METRICS_NAMESPACE', Value: 'Ca2vdm' },
      { Name: 'POWERTOOLS_SERVICE_NAME', Value: 'ca2vdm' },
    ]));
  });
});

describe('Dashboard construct', () => {
  it('uses the namespace, service and period it is given, and leaves the alarm widget out without alarms', () => {
    const stack = new Stack(new App());
    const d = new Dashboard(stack, 'D', { namespace: 'Other', serviceName: 'svc', period: Duration.minutes(1) });
    expect(d.metrics.jobsEnded.failed.namespace).toBe('Other');
    expect(d.metrics.jobsEnded.failed.dimensions).toEqual({ service: 'svc', status: 'failed' });
    expect(d.metrics.chunkSeconds.period.toMinutes()).toBe(1);
    const body = dashboardBody(Template.fromStack(stack));
    expect(body.widgets.map((w) => w.type)).toEqual(['metric', 'metric', 'metric', 'metric', 'metric']);
  });

  it('refuses a period that is not a whole number of minutes', () => {
    const stack = new Stack(new App());
    expect(() => new Dashboard(stack, 'D', { period: Duration.seconds(90) })).toThrow(/whole number of minutes/);
  });
});
