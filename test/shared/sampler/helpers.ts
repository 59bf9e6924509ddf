/** alpha_bar of model/diffusion.py's cosine schedule (s = 0.008, clipped to [1e-5, 0.9999], float32). */
export function cosineAlphasCumprod(n = 1000, s = 0.008): number[] {
  const f = (t: number) => Math.cos(((t / n + s) / (1 + s)) * (Math.PI / 2)) ** 2;
  const f0 = f(0);
  return Array.from({ length: n }, (_, i) => Math.fround(Math.min(0.9999, Math.max(1e-5, f(i + 1) / f0))));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
