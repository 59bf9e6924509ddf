import { vi } from 'vitest';

/** One EMF line as Powertools writes it: the `_aws` header, then the dimensions and values at the top level. */
export interface EmfLine {
  _aws: { Timestamp: number; CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string; Unit: string }[] }[] };
  [key: string]: unknown;
}

/** One metric value read back from the EMF lines on stdout. */
export interface EmittedMetric {
  namespace: string;
  name: string;
  unit: string;
  value: unknown;
  dimensions: Record<string, unknown>;
}

/**
 * Collects the EMF lines written to stdout while `body` runs, with POWERTOOLS_METRICS_NAMESPACE
 * set to `namespace` (unset when null); other stdout lines pass through.
 */
export async function captureEmf<T>(namespace: string | null, body: () => Promise<T>): Promise<{ result: T; metrics: EmittedMetric[] }> {
  const lines: EmfLine[] = [];
  const write = process.stdout.write.bind(process.stdout);
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: string | Uint8Array, ...rest: unknown[]) => {
    for (const text of String(chunk).split('\n')) {
      if (!text.startsWith('{"_aws"')) continue;
      lines.push(JSON.parse(text) as EmfLine);
    }
    return String(chunk).startsWith('{"_aws"') ? true : (write as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write);
  // Only this variable is set and put back (vi.unstubAllEnvs would also drop the caller's stubs).
  const before = process.env.POWERTOOLS_METRICS_NAMESPACE;
  if (namespace === null) delete process.env.POWERTOOLS_METRICS_NAMESPACE;
  else process.env.POWERTOOLS_METRICS_NAMESPACE = namespace;
  try {
    const result = await body();
    return { result, metrics: lines.flatMap(emittedMetrics) };
  } finally {
    spy.mockRestore();
    if (before === undefined) delete process.env.POWERTOOLS_METRICS_NAMESPACE;
    else process.env.POWERTOOLS_METRICS_NAMESPACE = before;
  }
}

function emittedMetrics(line: EmfLine): EmittedMetric[] {
  return line._aws.CloudWatchMetrics.flatMap((directive) => directive.Metrics.map((m) => ({
    namespace: directive.Namespace,
    name: m.Name,
    unit: m.Unit,
    value: line[m.Name],
    dimensions: Object.fromEntries(directive.Dimensions.flat().map((d) => [d, line[d]])),
  })));
}
