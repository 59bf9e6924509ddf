import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { embeddedOptionsFromEnv, startEmbeddedStack } from '../../scripts/stack.js';
import { LocalQueue } from '../../shared/queue/local-queue.js';
import { tempDir } from '../worker/fixtures.js';

afterEach(() => { vi.restoreAllMocks(); });

describe('npm start options', () => {
  it('reads the visibility window and the reaper threshold from the environment', () => {
    const opts = embeddedOptionsFromEnv({ VISIBILITY_SEC: '5', STALL_AFTER_SEC: '90', PORT: '0' });
    expect(opts).toMatchObject({ visibilitySec: 5, stallAfterSec: 90, port: 0, workers: 1, dataDir: '.data' });
    expect(embeddedOptionsFromEnv({}).visibilitySec).toBeUndefined();
    expect(embeddedOptionsFromEnv({ PUBLIC_API_URL: 'https://video.example' }).publicUrl).toBe('https://video.example');
    expect(() => embeddedOptionsFromEnv({ VISIBILITY_SEC: 'soon' })).toThrow(/VISIBILITY_SEC/);
    expect(() => embeddedOptionsFromEnv({ WORKERS: '0' })).toThrow(/WORKERS/);
    expect(embeddedOptionsFromEnv({}).provider).toBe('cpu');
    expect(embeddedOptionsFromEnv({ ORT_PROVIDER: 'cuda' }).provider).toBe('cuda');
    expect(() => embeddedOptionsFromEnv({ ORT_PROVIDER: 'gpu' })).toThrow('ORT_PROVIDER must be one of cpu, cuda, got "gpu"');
  });

  it("hands the visibility window to the stack's chunk workers", async () => {
    const seen: number[] = [];
    const receive = LocalQueue.prototype.receive;
    vi.spyOn(LocalQueue.prototype, 'receive').mockImplementation(function (this: LocalQueue, opts) {
      if (path.basename(this.dir) === 'chunks') seen.push(opts.visibilitySec);
      return receive.call(this, opts);
    });
    const stack = await startEmbeddedStack({ dataDir: tempDir(), port: 0, visibilitySec: 7 });
    try {
      await vi.waitFor(() => expect(seen.length).toBeGreaterThan(0), { timeout: 10_000 });
    } finally {
      await stack.close();
    }
    expect(new Set(seen)).toEqual(new Set([7]));
  });
});
