import { frameFloats, kvFrameFloats } from '../shared/model/manifest.js';
import { ddimSchedule } from '../shared/sampler/schedule.js';
import { ddimStep } from '../shared/sampler/ddim.js';
import { gaussianNoise } from '../shared/sampler/noise.js';
import type { LatentModelSession } from './latent-session.js';
import { kvFloats, type ModelSession } from './model-session.js';

/** One denoising step of an unconditional first chunk; throws unless every output is finite. */
export async function selfCheck(model: ModelSession) {
  const m = model.manifest;
  const l = m.chunk_frames;
  const x = gaussianNoise(l * frameFloats(m), { seed: 0, chunk: 0 });
  const [step] = ddimSchedule(m.schedule.alphas_cumprod, m.default_steps);
  const started = performance.now();
  const out = await model.step({ x, t: new Float32Array(l).fill(step.t), labels: [m.null_label ?? 0], pos: 0,
    cache: new Float32Array(0), cacheFrames: 0, rows: 1, frames: l });
  const next = ddimStep(x, out.prediction, step, m.prediction, m.frame.range);
  const finite = (a: Float32Array) => a.every(Number.isFinite);
  if (!finite(out.prediction) || !finite(kvFloats(out.kv)) || !finite(next) || out.kv.length !== l * kvFrameFloats(m, 1)) {
    throw new Error('self-check: the step graph returned non-finite or mis-shaped outputs');
  }
  return { model: m.name, provider: model.provider, step_ms: Math.round(performance.now() - started) };
}

/** A format-2 model: one starting frame through the encoder, one uncached step, the decoder; throws unless every output is finite and shaped. */
export async function latentSelfCheck(model: LatentModelSession) {
  const m = model.manifest;
  const started = performance.now();
  const latents = await model.encode(new Float32Array(3 * m.frame.height * m.frame.width), 1);
  const l = m.chunk_frames;
  const x = gaussianNoise(l * latents.length, { seed: 0, chunk: 0 });
  const { prediction } = await model.run({ x, t: new Float32Array(l).fill(m.schedule.train_timesteps - 1), clean: new Float32Array(l), pos: 1,
    cache: new Float32Array(0), cacheFrames: 0, rows: 1, frames: l }, 'prediction');
  const frames = await model.decode(latents, 1);
  const finite = (a?: Float32Array) => a !== undefined && a.every(Number.isFinite);
  if (!finite(latents) || !finite(prediction) || !finite(frames) || prediction!.length !== 2 * x.length || frames.length !== 3 * m.frame.height * m.frame.width) {
    throw new Error('self-check: the latent model returned non-finite or mis-shaped outputs');
  }
  return { model: m.name, provider: model.provider, step_ms: Math.round(performance.now() - started) };
}
