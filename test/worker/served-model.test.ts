// The worker opens either format on the execution provider asked for (ORT_PROVIDER), falling back
// to the CPU when the provider cannot be had, and says which one runs. The npm package here ships
// without the CUDA provider (its install step is skipped), so asking for CUDA exercises the fallback.
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LatentModelSession } from '../../gpu-worker/latent-session.js';
import { log } from '../../gpu-worker/log.js';
import { ModelSession } from '../../gpu-worker/model-session.js';
import { latentSelfCheck, selfCheck } from '../../gpu-worker/self-check.js';
import { isLatentModel, openServedModel } from '../../gpu-worker/served-model.js';
import { MODEL_DIR } from './fixtures.js';

const LATENT_DIR = fileURLToPath(new URL('../../model/artifacts/official-tiny-random/', import.meta.url));
const ortBin = path.join(path.dirname(createRequire(import.meta.url).resolve('onnxruntime-node')), '..', 'bin');
const cudaPresent = (function find(dir: string): boolean {
  if (!existsSync(dir)) return false;
  return readdirSync(dir, { withFileTypes: true })
    .some((e) => (e.isDirectory() ? find(path.join(dir, e.name)) : e.name.startsWith('libonnxruntime_providers_cuda')));
})(ortBin);

afterEach(() => { vi.restoreAllMocks(); });

describe.each([
  ['format 1 (pixel frames)', MODEL_DIR, ModelSession],
  ['format 2 (latents, three graphs)', LATENT_DIR, LatentModelSession],
] as const)('openServedModel, %s', (_, dir, kind) => {
  it('opens on the CPU when asked for it, and logs the provider', async () => {
    const info = vi.spyOn(log, 'info').mockImplementation(() => {});
    const model = await openServedModel(dir, 'cpu', 1);
    try {
      expect(model).toBeInstanceOf(kind);
      expect(isLatentModel(model)).toBe(kind === LatentModelSession);
      expect(model.provider).toBe('cpu');
      expect(info).toHaveBeenCalledWith('model loaded', expect.objectContaining({ model: model.manifest.name, provider: 'cpu', preferred: 'cpu', sha256: model.manifest.onnx_sha256 }));
    } finally {
      await model.release();
    }
  });

  it.runIf(!cudaPresent)('falls back to the CPU when CUDA is asked for and absent, saying so, and the model runs', async () => {
    const info = vi.spyOn(log, 'info').mockImplementation(() => {});
    const warn = vi.spyOn(log, 'warn').mockImplementation(() => {});
    const model = await openServedModel(dir, 'cuda', 1);
    try {
      expect(model.provider).toBe('cpu');
      expect(warn).toHaveBeenCalledTimes(1);
      expect(warn).toHaveBeenCalledWith('execution provider unavailable', expect.objectContaining({ provider: 'cuda', error: expect.stringMatching(/cuda/i) }));
      expect(info).toHaveBeenCalledWith('model loaded', expect.objectContaining({ provider: 'cpu', preferred: 'cuda' }));
      // Every graph opened and runs (the latent model's three: VAE encoder, step, decoder).
      await (isLatentModel(model) ? latentSelfCheck(model) : selfCheck(model as ModelSession));
    } finally {
      await model.release();
    }
  });
});
