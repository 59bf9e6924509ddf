/** One DDIM update: from x_t at alpha_bar(t) = `alpha` to the next (less noisy) `alphaPrev`. */
export interface DdimStep {
  t: number;
  alpha: number;
  alphaPrev: number;
}

/** Python's round(): half to even, so the worker picks the same timesteps as model/diffusion.py. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** t_i = round((T - 1) * (1 - i / S)) for i = 0..S-1: descending, from T-1 to about T/S. */
export function ddimTimesteps(steps: number, trainTimesteps: number): number[] {
  if (!Number.isInteger(steps) || steps < 1 || steps > trainTimesteps) {
    throw new RangeError(`steps must be an integer in 1..${trainTimesteps}, got ${steps}`);
  }
  return Array.from({ length: steps }, (_, i) => roundHalfEven((trainTimesteps - 1) * (1 - i / steps)));
}

/**
 * The S steps of a DDIM run over the manifest's alphas_cumprod. The last step goes to alpha 1
 * (clean), so the sampler's final output is its x0 estimate.
 */
export function ddimSchedule(alphasCumprod: ArrayLike<number>, steps: number): DdimStep[] {
  const ts = ddimTimesteps(steps, alphasCumprod.length);
  return ts.map((t, i) => ({
    t,
    alpha: alphasCumprod[t],
    alphaPrev: i + 1 < ts.length ? alphasCumprod[ts[i + 1]] : 1,
  }));
}
