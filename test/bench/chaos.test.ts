import { rmSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runChaos, SHORT } from '../../bench/chaos.js';
import { tempDir } from '../worker/fixtures.js';

describe('chaos suite, short form', () => {
  it('ends every job, each identical to the reference or failed with a documented reason, with no duplicate completed webhook', async () => {
    const dir = tempDir('ca2vdm-chaos-');
    const report = await runChaos(SHORT, { dir, log: () => {} }).finally(() => rmSync(dir, { recursive: true, force: true }));
    expect(report.unfinished).toEqual([]);
    expect(report.jobs).toBe(SHORT.jobs);
    expect(report.failed_jobs.map((f) => f.id).sort()).toEqual([...report.expected_failures].sort());
    expect(report.identical).toBe(report.succeeded);
    expect(report.succeeded + report.expected_failures.length).toBe(report.jobs);
    expect(report.duplicate_completed_webhooks).toBe(0);
    expect(report.completed_webhooks_missing).toBe(0);
    // Faults were injected at all (the run is not a plain one).
    expect(Object.values(report.faults).reduce((a, b) => a + (b ?? 0), 0)).toBeGreaterThan(0);
  }, 400_000);
});
