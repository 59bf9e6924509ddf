"""Sampling the official network chunk by chunk: IDDPM (learned-range variance) or DDIM over the
same respaced schedule, with the two caches shared by every step of a chunk, and the baseline that
recomputes the window's caches at every step.

The schedule is the official one: linear betas over 1000 steps, respaced to `steps` evenly spaced
timesteps (IDDPM's space_timesteps), coefficients in float64 and used in float32.
"""
import numpy as np
import torch

from .export import linear_alphas_cumprod
from .stdit2 import prefix_frame_indices


def respaced_timesteps(steps, n=1000):
    """The original timesteps IDDPM's respacing keeps for `steps` steps: a running sum of the stride
    (n-1)/(steps-1), each rounded (half to even, as Python rounds)."""
    stride = (n - 1) / (steps - 1) if steps > 1 else 1
    taken, cur = [], 0.0
    for _ in range(steps):
        taken.append(round(cur))
        cur += stride
    return sorted(set(taken))


class Schedule:
    """The respaced diffusion: tables indexed by the respaced step i (0 = least noise). As IDDPM
    builds them: the respaced betas rounded to float32, every table computed from them in float32."""
    def __init__(self, steps, n=1000):
        ac_all = linear_alphas_cumprod(n)
        self.timesteps = respaced_timesteps(steps, n)
        kept = ac_all[self.timesteps]
        betas = torch.tensor(1 - kept / np.append(1.0, kept[:-1]), dtype=torch.float32)
        ac = torch.cumprod(1.0 - betas, 0)
        prev = torch.cat([torch.tensor([1.0]), ac[:-1]])
        post_var = betas * (1.0 - prev) / (1.0 - ac)
        self.ac, self.ac_prev, self.betas = ac, prev, betas
        self.post_log_var = torch.log(torch.cat([post_var[1:2], post_var[1:]]))
        self.coef1 = betas * torch.sqrt(prev) / (1.0 - ac)
        self.coef2 = (1.0 - prev) * torch.sqrt(1.0 - betas) / (1.0 - ac)
        self.sqrt_recip_ac, self.sqrt_recipm1_ac = torch.sqrt(1.0 / ac), torch.sqrt(1.0 / ac - 1)
        self.log_betas = torch.log(betas)

    def f(self, name, i):
        return getattr(self, name)[i]

    def context_coefs(self, context_t):
        """(sqrt(a), sqrt(1 - a)) of the context noise: the respaced table's when context_t is one of its
        timesteps (as the official inference noises at a respaced step), else the full schedule's."""
        if context_t in self.timesteps:
            a = self.ac[self.timesteps.index(context_t)]
            return torch.sqrt(a), torch.sqrt(1.0 - a)
        a = torch.tensor(float(linear_alphas_cumprod()[context_t]))
        return torch.sqrt(a), torch.sqrt(1.0 - a)

    def iddpm_step(self, x, out, i, noise):
        """x_{i-1} from x_i and the model's (eps, v) output, as IDDPM's p_sample (no clipping)."""
        C = x.shape[2]
        eps, v = out[:, :, :C], out[:, :, C:]
        x0 = self.f("sqrt_recip_ac", i) * x - self.f("sqrt_recipm1_ac", i) * eps
        mean = self.f("coef1", i) * x0 + self.f("coef2", i) * x
        frac = (v + 1) / 2
        log_var = frac * self.f("log_betas", i) + (1 - frac) * self.f("post_log_var", i)
        return mean + (0.0 if i == 0 else 1.0) * torch.exp(0.5 * log_var) * noise

    def ddim_step(self, x, out, i):
        """Deterministic DDIM over the same schedule (eps prediction; the variance output unused)."""
        eps = out[:, :, :x.shape[2]]
        ac, prev = self.f("ac", i), self.f("ac_prev", i)
        x0 = (x - torch.sqrt(1 - ac) * eps) / torch.sqrt(ac)
        return torch.sqrt(prev) * x0 + torch.sqrt(1 - prev) * eps


def default_noise(shape):
    """Noise of (B, F, C, H, W) drawn as the official code draws it, (B, C, F, H, W) from the global RNG."""
    B, F, C, H, W = shape
    return torch.randn(B, C, F, H, W).permute(0, 2, 1, 3, 4)


class Window:
    """The caches a chunk is conditioned on: the newest P_max frames' temporal K/V and the last
    written chunk's spatial K/V, each as the model returned them (frames-first)."""
    def __init__(self, model, rows):
        cfg = model.cfg
        self.model = model
        self.kv = torch.zeros(0, cfg.depth, 2, rows, cfg.tokens, cfg.hidden_size)
        self.kv_prefix = None

    def write(self, kv, kv_prefix):
        self.kv = torch.cat([self.kv, kv])[-self.model.cfg.p_max:]
        self.kv_prefix = kv_prefix

    def inputs(self):
        """(cache, prefix, cache_pos) as the step takes them; cached frames in time order."""
        m = self.model
        cache = m.cache_from_kv(self.kv)
        prefix = None
        if m.cfg.prefix_frames:
            if self.kv_prefix is None:
                prefix = m.empty_cache(self.kv.shape[3], m.cfg.prefix_frames)
            else:
                prefix = m.cache_from_kv(self.kv_prefix[prefix_frame_indices(self.kv_prefix.shape[0], m.cfg.prefix_frames)])
        return cache, prefix, torch.arange(self.kv.shape[0])


def write_pass(model, window, frames, start, y):
    """The cache-write pass: clean frames (B, F, C, H, W) at t = 0 after the window; their K/V are written."""
    B, F = frames.shape[:2]
    cache, prefix, cache_pos = window.inputs()
    _, kv, kvp = model.step(frames, torch.zeros(B, F), torch.ones(B, F), torch.tensor([start]), y, cache, prefix, cache_pos)
    window.write(kv, kvp)


@torch.no_grad()
def generate(model, init, chunks, steps=100, y=None, sampler="iddpm", use_cache=True, context_t=0,
             noise_fn=default_noise, init_noise=None):
    """`chunks` chunks of latents after `init` (B, F0, C, H, W): returns (B, F0 + chunks * l, C, H, W).
    With the cache, the window's K/V are written once per chunk and shared by all steps; without,
    every step rebuilds them from the window's (context-noised) latents. Equal while no frame has
    left the window (after that the cache keeps K/V computed with frames that have since left).
    context_t > 0: conditioning latents are noised at that original timestep first (drawn once per
    written chunk from noise_fn, as the official inference does). init_noise: (B, chunks * l, C, H, W)."""
    cfg = model.cfg
    sch = Schedule(steps)
    B = init.shape[0]
    l = cfg.chunk
    sa, s1a = sch.context_coefs(context_t) if context_t else (None, None)

    def context(x):
        if not context_t:
            return x
        return sa * x + s1a * noise_fn(x.shape)

    hist = init.clone()
    ctx_hist = context(init)
    written = [(0, init.shape[1])]                      # the pieces each cache write covered
    window = Window(model, B)
    if use_cache:
        write_pass(model, window, ctx_hist, 0, y)
    if init_noise is None:
        init_noise = noise_fn((B, chunks * l) + tuple(init.shape[2:]))
    for c in range(chunks):
        start = hist.shape[1]
        x = init_noise[:, c * l:(c + 1) * l].clone()
        for i in reversed(range(len(sch.timesteps))):
            t = torch.full((B, l), float(sch.timesteps[i]))
            if use_cache:
                cache, prefix, cache_pos = window.inputs()
            else:                                       # rebuild the window from its latents, piece by piece
                first = max(0, start - cfg.p_max)
                fresh = Window(model, B)
                for s, e in written:
                    if e > first:
                        write_pass(model, fresh, ctx_hist[:, max(s, first):e], max(s, first), y)
                cache, prefix, cache_pos = fresh.inputs()
            out, _, _ = model.step(x, t, torch.zeros(B, l), torch.tensor([start]), y, cache, prefix, cache_pos)
            if sampler == "iddpm":
                x = sch.iddpm_step(x, out, i, noise_fn(x.shape))
            else:
                x = sch.ddim_step(x, out, i)
        hist = torch.cat([hist, x], 1)
        xc = context(x)
        ctx_hist = torch.cat([ctx_hist, xc], 1)
        written.append((start, start + l))
        if use_cache:
            write_pass(model, window, xc, start, y)
    return hist
