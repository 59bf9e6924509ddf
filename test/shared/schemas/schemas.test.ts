import { describe, expect, it } from 'vitest';
import { ChunkTaskSchema, chunkTaskDedupId } from '../../../shared/schemas/chunk-task.js';
import { JobSchema, isTerminal } from '../../../shared/schemas/job.js';
import { WebhookEventSchema } from '../../../shared/schemas/webhook-event.js';

const now = '2025-01-01T00:00:00.000Z';
const job = {
  id: 'job_1',
  tenant: 'acme',
  status: 'starting',
  request: { frames: 64, seed: 7, guidance: 1.5, steps: 20, init_frames: { count: 0, keys: [] } },
  model: { name: 'tiny', sha256: 'a'.repeat(64) },
  progress: { chunks_done: 0, chunks_total: 4, frames_done: 0, frames_total: 64 },
  created_at: now,
  updated_at: now,
  metrics: { chunk_seconds: [] },
  outputs: {},
};

describe('JobSchema', () => {
  it('accepts a minimal job and fills defaults', () => {
    const parsed = JobSchema.parse(job);
    expect(parsed.cancel_requested).toBe(false);
    expect(parsed.request.webhook_events_filter).toEqual(['start', 'output', 'completed']);
  });

  it('round-trips through JSON', () => {
    const parsed = JobSchema.parse({ ...job, status: 'failed', error: { code: 'max_receives', message: 'gave up' } });
    expect(JobSchema.parse(JSON.parse(JSON.stringify(parsed)))).toEqual(parsed);
  });

  it.each([
    ['an unsafe tenant', { tenant: '../x' }],
    ['an unknown status', { status: 'running' }],
    ['a bad model hash', { model: { name: 'tiny', sha256: 'xyz' } }],
    ['init_frames whose count disagrees with its keys', { request: { ...job.request, init_frames: { count: 2, keys: ['a'] } } }],
    ['a non-http webhook', { request: { ...job.request, webhook: 'ftp://x.example/hook' } }],
    ['a non-integer frame count', { request: { ...job.request, frames: 1.5 } }],
    ['a non-ISO timestamp', { created_at: 'yesterday' }],
  ])('rejects %s', (_, patch) => {
    expect(JobSchema.safeParse({ ...job, ...patch }).success).toBe(false);
  });

  it('knows the terminal statuses', () => {
    expect(['succeeded', 'failed', 'canceled'].every((s) => isTerminal(s as never))).toBe(true);
    expect(isTerminal('processing')).toBe(false);
  });
});

describe('ChunkTaskSchema', () => {
  it('accepts a task and derives the dedup id job:chunk', () => {
    const task = ChunkTaskSchema.parse({ job: 'j1', tenant: 't1', chunk: 3 });
    expect(chunkTaskDedupId(task)).toBe('j1:3');
  });
  it('rejects a negative chunk', () => {
    expect(ChunkTaskSchema.safeParse({ job: 'j1', tenant: 't1', chunk: -1 }).success).toBe(false);
  });
});

describe('WebhookEventSchema', () => {
  it('accepts each event type and rejects others', () => {
    for (const type of ['start', 'output', 'completed']) {
      expect(WebhookEventSchema.safeParse({ id: 'ev1', type, job_id: 'j1', tenant: 't1', created_at: now, payload: {} }).success).toBe(true);
    }
    expect(WebhookEventSchema.safeParse({ id: 'ev1', type: 'done', job_id: 'j1', tenant: 't1', created_at: now, payload: {} }).success).toBe(false);
  });
});
