import { frameFloats, kvFrameFloats } from '../shared/model/manifest.js';
import { ddimSchedule } from '../shared/sampler/schedule.js';
import { ddimStep } from '../shared/sampler/ddim.js';
import { gaussianNoise } from '../shared/sampler/noise.js';
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
