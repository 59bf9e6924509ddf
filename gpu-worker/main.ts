/**
 * The GPU worker process. Environment:
 *   STORE=local|s3 (default local), DATA_DIR (local, default .data), BUCKET, CHUNK_QUEUE_URL,
 *   WEBHOOK_QUEUE_URL (s3), MODEL_DIR (default model/artifacts/balls32-v1), ORT_PROVIDER=cpu|cuda,
 *   VISIBILITY_SEC (default 60), ORT_THREADS, WINDOW_MEMO_BYTES (default from the manifest and the
 *   machine), DEFER_SEGMENT_BYTES (segments this large are stored while the next chunk runs; 8 MiB).
 * `--self-check` loads the model, runs one denoising step and exits 0 (the image's health proof).
 * SIGTERM/SIGINT: stop taking tasks, finish the chunk in flight, exit.
 */
import { adaptersFromEnv } from './adapters.js';
import { DEFAULT_MODEL_DIR } from './defaults.js';
import { log } from './log.js';
import { providerFromEnv } from './model-session.js';
import { isLatentModel, openServedModel } from './served-model.js';
import { latentSelfCheck, selfCheck } from './self-check.js';
import { ChunkWorker } from './worker.js';

async function main(argv: string[]): Promise<number> {
  const modelDir = process.env.MODEL_DIR ?? DEFAULT_MODEL_DIR;
  const provider = providerFromEnv(process.env.ORT_PROVIDER);
  const threads = process.env.ORT_THREADS ? Number(process.env.ORT_THREADS) : undefined;
  const model = await openServedModel(modelDir, provider, threads);
  if (argv.includes('--self-check')) {
    const result = isLatentModel(model) ? await latentSelfCheck(model) : await selfCheck(model);
    log.info('self-check passed', result);
    await model.release();
    return 0;
  }
  const worker = new ChunkWorker({ ...adaptersFromEnv(), model, ownsModel: true,
    visibilitySec: Number(process.env.VISIBILITY_SEC ?? 60), waitSec: process.env.STORE === 's3' ? 20 : 2,
    windowMemoBytes: process.env.WINDOW_MEMO_BYTES ? Number(process.env.WINDOW_MEMO_BYTES) : undefined,
    deferSegmentBytes: process.env.DEFER_SEGMENT_BYTES ? Number(process.env.DEFER_SEGMENT_BYTES) : undefined });
  const stop = (signal: string) => {
    log.info('draining', { signal });
    void worker.close();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  log.info('worker started', { provider: model.provider, model: model.manifest.name, store: process.env.STORE ?? 'local' });
  await worker.run();
  await worker.close();
  log.info('worker stopped');
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    log.error('worker crashed', { error: String(error), stack: (error as Error)?.stack });
    process.exit(1);
  },
);
