/**
 * IDDPM sampling with a learned-range variance, as the official Ca2-VDM inference samples
 * (model/official/sampling.py is the reference, and a test holds this to it).
 *
 * Respacing keeps `steps` of the T original timesteps (a running sum of the stride (T-1)/(steps-1),
 * rounded half to even). The respaced betas are rounded to float32 and every table is computed from
 * them in float32, as IDDPM does, so the TS and PyTorch chains take the same values.
 */
const f = Math.fround;

/** Python's round(): half to even. */
function roundHalfEven(x: number): number {
  const fl = Math.floor(x);
  const d = x - fl;
  if (d > 0.5) return fl + 1;
  if (d < 0.5) return fl;
  return fl % 2 === 0 ? fl : fl + 1;
}

/** The original timesteps kept for `steps` sampling steps (ascending). */
export function respacedTimesteps(steps: number, trainTimesteps: number): number[] {
  if (!Number.isInteger(steps) || steps < 1 || steps > trainTimesteps) {
    throw new RangeError(`steps must be an integer in 1..${trainTimesteps}, got ${steps}`);
  }
  const stride = steps > 1 ? (trainTimesteps - 1) / (steps - 1) : 1;
  const taken = new Set<number>();
  let cur = 0;
  for (let i = 0; i < steps; i++) {
    taken.add(roundHalfEven(cur));
    cur += stride;
  }
  return [...taken].sort((a, b) => a - b);
}

/** The respaced chain's tables, index i = respaced step (0 = least noise); all float32 values. */
export interface IddpmSchedule {
  timesteps: number[];
  alphasCumprod: Float32Array;
  sqrtRecipAc: Float32Array;
  sqrtRecipm1Ac: Float32Array;
  coef1: Float32Array;
  coef2: Float32Array;
  logBetas: Float32Array;
  postLogVar: Float32Array;
}

/** Builds the respaced tables from the full schedule's alphas_cumprod (the manifest's). */
export function iddpmSchedule(alphasCumprod: ArrayLike<number>, steps: number): IddpmSchedule {
  const timesteps = respacedTimesteps(steps, alphasCumprod.length);
  const n = timesteps.length;
  const betas = new Float32Array(n);
  let last = 1;
  timesteps.forEach((t, i) => {
    betas[i] = 1 - alphasCumprod[t] / last;     // float64, then float32 as the table stores it
    last = alphasCumprod[t];
  });
  const ac = new Float32Array(n);
  const prev = new Float32Array(n);
  let cum = 1;
  for (let i = 0; i < n; i++) {
    prev[i] = cum;
    cum = f(cum * f(1 - betas[i]));
    ac[i] = cum;
  }
  const tables = {
    sqrtRecipAc: new Float32Array(n), sqrtRecipm1Ac: new Float32Array(n), coef1: new Float32Array(n),
    coef2: new Float32Array(n), logBetas: new Float32Array(n), postLogVar: new Float32Array(n),
  };
  const postVar = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const oneMinusAc = f(1 - ac[i]);
    postVar[i] = f(f(betas[i] * f(1 - prev[i])) / oneMinusAc);
    tables.coef1[i] = f(f(betas[i] * f(Math.sqrt(prev[i]))) / oneMinusAc);
    tables.coef2[i] = f(f(f(1 - prev[i]) * f(Math.sqrt(f(1 - betas[i])))) / oneMinusAc);
    const recip = f(1 / ac[i]);
    tables.sqrtRecipAc[i] = f(Math.sqrt(recip));
    tables.sqrtRecipm1Ac[i] = f(Math.sqrt(f(recip - 1)));
    tables.logBetas[i] = f(Math.log(betas[i]));
  }
  // The posterior variance is 0 at the first step: its log is clipped to the second step's.
  for (let i = 0; i < n; i++) tables.postLogVar[i] = f(Math.log(postVar[n > 1 && i === 0 ? 1 : i]));
  return { timesteps, alphasCumprod: ac, ...tables };
}

/**
 * One IDDPM step from respaced step i: x [F, C, H, W] and the model's output [F, 2C, H, W] (each
 * frame's eps channels, then its variance values v) -> x at step i-1 (the clean estimate at i = 0).
 * x0 = sqrt(1/a) x - sqrt(1/a - 1) eps; mean = coef1 x0 + coef2 x; log var = frac log beta +
 * (1 - frac) clipped posterior log var, frac = (v + 1) / 2; sample = mean + exp(log var / 2) noise.
 * `frameValues` = C * H * W.
 */
export function iddpmStep(
  x: Float32Array, out: Float32Array, s: IddpmSchedule, i: number, noise: Float32Array, frameValues: number,
  result: Float32Array = new Float32Array(x.length),
): Float32Array {
  if (out.length !== 2 * x.length) throw new RangeError(`output has ${out.length} values, expected 2 x ${x.length}`);
  if (noise.length !== x.length) throw new RangeError(`noise has ${noise.length} values, expected ${x.length}`);
  if (x.length % frameValues !== 0) throw new RangeError(`x (${x.length} values) is not whole frames of ${frameValues}`);
  const [ra, rm1, c1, c2, lb, pl] = [s.sqrtRecipAc[i], s.sqrtRecipm1Ac[i], s.coef1[i], s.coef2[i], s.logBetas[i], s.postLogVar[i]];
  for (let k = 0; k < x.length; k++) {
    const frame = Math.floor(k / frameValues);
    const at = frame * 2 * frameValues + (k - frame * frameValues);
    const eps = out[at];
    const v = out[at + frameValues];
    const x0 = f(f(ra * x[k]) - f(rm1 * eps));
    const mean = f(f(c1 * x0) + f(c2 * x[k]));
    const frac = f(f(v + 1) / 2);
    const logVar = f(f(frac * lb) + f(f(1 - frac) * pl));
    result[k] = i === 0 ? mean : f(mean + f(f(Math.exp(f(0.5 * logVar))) * noise[k]));
  }
  return result;
}
