/**
 * The embedded stack: everything the AWS deployment runs, in one process on one machine. The same
 * handlers behind a loopback HTTP server, the local store (a folder) and queues, chunk workers on
 * the CPU execution provider, the webhook dispatcher and the chunk dead-letter handler.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { failJobOfDeadChunk } from '../functions/chunk-dead-letter.js';
import { startApiServer } from '../functions/local/server.js';
import { localAdapters, type Adapters } from '../gpu-worker/adapters.js';
import { DEFAULT_MODEL_DIR } from '../gpu-worker/defaults.js';
import { log } from '../gpu-worker/log.js';
import type { LatentModelSession } from '../gpu-worker/latent-session.js';
import { providerFromEnv, type ModelSession, type ProviderName } from '../gpu-worker/model-session.js';
import { openServedModel } from '../gpu-worker/served-model.js';
import { ChunkWorker, type TaskEvent } from '../gpu-worker/worker.js';
import { DEFAULT_API_CONFIG } from '../shared/api/config.js';
import { ensureLocalApiKey } from '../shared/auth/api-keys.js';
import { DEFAULT_STALL_AFTER_SEC, startReaper } from '../shared/jobs/reaper.js';
import { startWebhookDispatcher } from '../shared/webhooks/dispatcher.js';

export interface EmbeddedStackOptions {
  dataDir: string;
  port?: number;
  workers?: number;
  modelDir?: string;
  provider?: ProviderName;
  /** Webhooks to 127.0.0.1 (local testing only; off unless asked for). */
  allowLoopbackWebhooks?: boolean;
  /** Visibility window of a received chunk task: how long a killed worker's chunk waits before another takes it. Default 60 s. */
  visibilitySec?: number;
  /** Base of the links the API returns (e.g. behind a proxy); default the address it listens on. */
  publicUrl?: string;
  /** A job whose record has not changed for this long gets its next chunk task again (shared/jobs/reaper.ts). Default 600 s. */
  stallAfterSec?: number;
  onTask?: (event: TaskEvent) => void;
}

export interface EmbeddedStack {
  url: string;
  apiKey: string;
  tenant: string;
  keyCreated: boolean;
  /** The served model: a format-1 step graph, or a format-2 latent model (MODEL_DIR picks either). */
  model: ModelSession | LatentModelSession;
  adapters: Adapters;
  close(): Promise<void>;
}

/** `npm start`'s options from its environment (see scripts/start.ts); a malformed number is refused. */
export function embeddedOptionsFromEnv(env: NodeJS.ProcessEnv): EmbeddedStackOptions {
  const num = (name: string, fallback?: number, min = Number.MIN_VALUE): number | undefined => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const v = Number(raw);
    if (!/^\d+(\.\d+)?$/.test(raw.trim()) || !(v >= min)) throw new Error(`${name} must be a number >= ${min}, got ${JSON.stringify(raw)}`);
    return v;
  };
  return {
    dataDir: env.DATA_DIR ?? '.data',
    ...(env.MODEL_DIR ? { modelDir: env.MODEL_DIR } : {}),
    port: num('PORT', 8080, 0), // 0: any free port
    workers: num('WORKERS', 1),
    provider: providerFromEnv(env.ORT_PROVIDER),
    allowLoopbackWebhooks: env.ALLOW_LOOPBACK_WEBHOOKS === '1',
    visibilitySec: num('VISIBILITY_SEC'),
    stallAfterSec: num('STALL_AFTER_SEC'),
    ...(env.PUBLIC_API_URL ? { publicUrl: env.PUBLIC_API_URL } : {}),
  };
}

export async function startEmbeddedStack(opts: EmbeddedStackOptions): Promise<EmbeddedStack> {
  await mkdir(opts.dataDir, { recursive: true });
  const adapters = localAdapters(opts.dataDir);
  const model = await openServedModel(opts.modelDir ?? DEFAULT_MODEL_DIR, opts.provider ?? 'cpu');
  const { key, tenant, created } = await ensureLocalApiKey(adapters.store);
  // The CLI reads the key from here when none is given.
  await writeFile(path.join(opts.dataDir, 'api-key'), key + '\n', { mode: 0o600 });

  const allowLoopback = opts.allowLoopbackWebhooks ?? false;
  const api = await startApiServer({
    ...adapters, manifest: model.manifest, port: opts.port ?? 8080, publicUrl: opts.publicUrl,
    config: { ...DEFAULT_API_CONFIG, requireHttpsWebhooks: false, allowLoopbackWebhooks: allowLoopback },
  });
  const workers = Array.from({ length: opts.workers ?? 1 }, () =>
    new ChunkWorker({ ...adapters, model, waitSec: 1, visibilitySec: opts.visibilitySec, onTask: opts.onTask }));
  const loops = workers.map((w) => w.run());
  const dispatcher = startWebhookDispatcher({ store: adapters.store, webhookQueue: adapters.webhookQueue, allowLoopback, baseUrl: api.url });
  const deadLetters = consumeDeadLetters(adapters);
  const stallAfterSec = opts.stallAfterSec ?? DEFAULT_STALL_AFTER_SEC;
  const reaper = startReaper(adapters, {
    stallAfterSec, everySec: Math.max(1, Math.min(60, stallAfterSec / 4)),
    onPass: (result) => { if (result.requeued.length) log.warn('reaper re-queued stalled jobs', { requeued: result.requeued }); },
    onError: (error) => log.warn('reaper pass failed, retrying', { error: String(error) }),
  });

  let closing: Promise<void> | undefined;
  return {
    url: api.url, apiKey: key, tenant, keyCreated: created, model, adapters,
    close: () => (closing ??= (async () => {
      await api.close();
      await Promise.all(workers.map((w) => w.close()));
      await Promise.allSettled(loops);
      await dispatcher.close();
      await deadLetters.close();
      await reaper.close();
      await model.release();
    })()),
  };
}

/** The embedded twin of the chunk-dead-letter Lambda: a dead chunk task fails its job with a reason. */
function consumeDeadLetters(adapters: Adapters): { close(): Promise<void> } {
  const queue = adapters.chunkDeadLetters;
  let stopped = false;
  const loop = (async () => {
    while (queue && !stopped) {
      try {
        for (const m of await queue.receive({ max: 10, visibilitySec: 30, waitSec: 1 })) {
          await failJobOfDeadChunk(adapters, m.body);
          await queue.delete(m.receiptHandle);
        }
      } catch (error) {
        log.warn('dead-letter handling failed, retrying', { error: String(error) });
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  })();
  return { close: async () => { stopped = true; await loop; } };
}
