/**
 * The model a worker serves, of either kind: a format-1 step graph on pixel frames (ModelSession),
 * or a format-2 latent model with its VAE graphs and two caches (LatentModelSession). The chunk step
 * shares everything but the chunk's own computation between them (chunk-step.ts, latent-chunk.ts).
 */
import { manifestFormat } from '../shared/model/manifest-v2.js';
import { LatentModelSession } from './latent-session.js';
import { ModelSession, type ProviderName, type StepGraph } from './model-session.js';

export type ServedModel = StepGraph | LatentModelSession;

export const isLatentModel = (model: ServedModel): model is LatentModelSession => model.manifest.format === 2;

/** Opens `dir` by its manifest's format, on `provider` when it can be had (else the CPU). */
export async function openServedModel(dir: string, provider: ProviderName = 'cpu', threads?: number): Promise<ModelSession | LatentModelSession> {
  if (await manifestFormat(dir) === 2) return LatentModelSession.open(dir, provider, threads);
  return ModelSession.open(dir, provider, threads);
}
