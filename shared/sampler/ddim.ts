import type { DdimStep } from './schedule.js';

export type Prediction = 'v' | 'eps' | 'x0';
export type FrameRange = readonly [number, number];

/**
 * Deterministic DDIM (eta = 0) for one step, elementwise over x_t:
 *   v:   x0 = sqrt(a) x - sqrt(1-a) v          eps: x0 = (x - sqrt(1-a) eps) / sqrt(a)
 *   x0:  the prediction itself
 * x0 is clipped to the frame range and eps re-derived from the clipped x0,
 *   eps = (x - sqrt(a) x0) / sqrt(1-a),   x_prev = sqrt(a_prev) x0 + sqrt(1-a_prev) eps,
 * exactly as model/diffusion.py does, so TS and PyTorch runs follow the same trajectory.
 */
export function ddimStep(
  x: Float32Array,
  pred: Float32Array,
  step: Pick<DdimStep, 'alpha' | 'alphaPrev'>,
  prediction: Prediction,
  range: FrameRange,
  out: Float32Array = new Float32Array(x.length),
): Float32Array {
  if (pred.length !== x.length) throw new RangeError(`prediction has ${pred.length} values, x has ${x.length}`);
  const { alpha, alphaPrev } = step;
  if (!(alpha > 0 && alpha < 1)) throw new RangeError(`alpha must be in (0, 1), got ${alpha}`);
  const sa = Math.sqrt(alpha);
  const s1a = Math.sqrt(1 - alpha);
  const sp = Math.sqrt(alphaPrev);
  const s1p = Math.sqrt(1 - alphaPrev);
  const [lo, hi] = range;
  for (let i = 0; i < x.length; i++) {
    const xi = x[i];
    const p = pred[i];
    let x0 = prediction === 'v' ? sa * xi - s1a * p : prediction === 'eps' ? (xi - s1a * p) / sa : p;
    x0 = x0 < lo ? lo : x0 > hi ? hi : x0;
    const eps = (xi - sa * x0) / s1a;
    out[i] = sp * x0 + s1p * eps;
  }
  return out;
}

/**
 * Classifier-free guidance over a batch of 2 rows (row 0 conditional, row 1 null label):
 * uncond + g * (cond - uncond), one row out.
 */
export function guide(pred: Float32Array, guidance: number, out?: Float32Array): Float32Array {
  if (pred.length % 2 !== 0) throw new RangeError('guided prediction must have 2 equal rows');
  const n = pred.length / 2;
  const res = out ?? new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = pred[n + i];
    res[i] = u + guidance * (pred[i] - u);
  }
  return res;
}

/** The network: x of `rows` identical rows at timestep t -> its prediction, same shape. */
export type StepModel = (x: Float32Array, t: number, rows: 1 | 2) => Promise<Float32Array> | Float32Array;

export interface DenoiseOptions {
  /** x_T: one row of Gaussian noise [F, C, H, W]; not modified. */
  noise: Float32Array;
  steps: readonly DdimStep[];
  prediction: Prediction;
  range: FrameRange;
  /** With a scale, every call runs 2 rows (conditional, null label) and combines them. */
  guidance?: number;
  model: StepModel;
  signal?: AbortSignal;
}

/** Runs the whole DDIM chain for one chunk and returns the clean frames (one row). */
export async function denoise(opts: DenoiseOptions): Promise<Float32Array> {
  const { noise, guidance, prediction, range } = opts;
  const n = noise.length;
  const rows = guidance === undefined ? 1 : 2;
  let x = Float32Array.from(noise);
  let next = new Float32Array(n);
  // Both rows see the same x; one buffer of `rows` copies is refilled each step.
  const batch = rows === 1 ? x : new Float32Array(2 * n);
  for (const step of opts.steps) {
    opts.signal?.throwIfAborted();
    if (rows === 2) {
      batch.set(x, 0);
      batch.set(x, n);
    }
    const raw = await opts.model(rows === 1 ? x : batch, step.t, rows);
    if (raw.length !== rows * n) throw new RangeError(`model returned ${raw.length} values, expected ${rows * n}`);
    const pred = guidance === undefined ? raw : guide(raw, guidance);
    ddimStep(x, pred, step, prediction, range, next);
    [x, next] = [next, x];
  }
  return x;
}
