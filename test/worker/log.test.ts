import { afterEach, describe, expect, it, vi } from 'vitest';
import { log } from '../../gpu-worker/log.js';

/** The JSON lines written to stdout and stderr while `body` runs. */
function captured(body: () => void): { out: Record<string, unknown>[]; err: Record<string, unknown>[] } {
  const take = (stream: NodeJS.WriteStream, into: Record<string, unknown>[]) =>
    vi.spyOn(stream, 'write').mockImplementation(((chunk: string) => {
      for (const line of String(chunk).split('\n')) if (line) into.push(JSON.parse(line));
      return true;
    }) as never);
  const out: Record<string, unknown>[] = [];
  const err: Record<string, unknown>[] = [];
  const spies = [take(process.stdout, out), take(process.stderr, err)];
  try { body(); } finally { spies.forEach((s) => s.mockRestore()); }
  return { out, err };
}

afterEach(() => { vi.unstubAllEnvs(); });

describe('worker log (Powertools logger, the worker line format)', () => {
  it('writes {time, level, service, message, ...fields}: info to stdout, warn and error to stderr', () => {
    vi.stubEnv('LOG_LEVEL', 'info');
    const { out, err } = captured(() => {
      log.info('chunk task done', { job: 'j1', chunk: 2, outcome: 'computed', seconds: 0.5 });
      log.warn('chunk out of order, left for redelivery', { job: 'j1', chunk: 3 });
      log.error('job failed', { job: 'j1', code: 'model_mismatch' });
    });
    expect(out).toEqual([{ time: expect.any(String), level: 'info', service: 'gpu-worker', message: 'chunk task done', job: 'j1', chunk: 2, outcome: 'computed', seconds: 0.5 }]);
    expect(Number.isNaN(Date.parse(out[0].time as string))).toBe(false);
    expect(err.map((l) => [l.level, l.message, l.chunk ?? l.code])).toEqual([
      ['warn', 'chunk out of order, left for redelivery', 3],
      ['error', 'job failed', 'model_mismatch'],
    ]);
  });

  it('reads LOG_LEVEL at every line, so a script may set it after importing the worker', () => {
    vi.stubEnv('LOG_LEVEL', 'warn');
    const quiet = captured(() => { log.info('hidden'); log.debug('hidden'); log.warn('shown'); });
    expect([...quiet.out, ...quiet.err].map((l) => l.message)).toEqual(['shown']);
    vi.stubEnv('LOG_LEVEL', 'debug');
    const loud = captured(() => { log.debug('chunk phases', { ms: { denoise: 3 } }); });
    expect(loud.out).toEqual([expect.objectContaining({ level: 'debug', message: 'chunk phases', ms: { denoise: 3 } })]);
  });
});
