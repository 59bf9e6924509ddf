"""Noise schedule, training loss and the chunk-by-chunk DDIM sampler with a shared K/V cache.

The TypeScript worker implements the same sampler (shared/sampler); the timestep spacing and
update below are the contract both follow.
"""
import math

import torch

TRAIN_STEPS = 1000


def cosine_alphas_cumprod(n=TRAIN_STEPS, s=0.008):
    """alpha_bar(t) of the cosine schedule, t = 0..n-1, clipped away from exactly 0."""
    t = torch.arange(n + 1, dtype=torch.float64) / n
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    ab = (f / f[0])[1:]
    return ab.clamp(min=1e-5, max=0.9999).float()


def sample_timesteps(steps, n=TRAIN_STEPS):
    """t_i = round((n - 1) * (1 - i / steps)), i = 0..steps-1 (descending)."""
    return [int(round((n - 1) * (1 - i / steps))) for i in range(steps)]


def q_sample(x0, noise, ab):
    """Noisy x_t for per-frame alpha_bar ab (broadcastable to x0)."""
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def v_target(x0, noise, ab):
    return ab.sqrt() * noise - (1 - ab).sqrt() * x0


def loss_fn(pred, x0, noise, ab, gamma=5.0):
    """v-prediction MSE with min-SNR-gamma weighting (weight = min(snr, gamma) / (snr + 1))."""
    snr = ab / (1 - ab)
    w = snr.clamp(max=gamma) / (snr + 1)
    err = ((pred - v_target(x0, noise, ab)) ** 2).mean(dim=(2, 3, 4), keepdim=True)
    return (w * err).mean()


def ddim_update(x, pred, ab, ab_prev):
    """One deterministic DDIM step from v-prediction; x0 is clipped to the frame range."""
    x0 = (ab.sqrt() * x - (1 - ab).sqrt() * pred).clamp(-1, 1)
    eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
    return ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps, x0


def default_context_t(cfg):
    """The inference noise level of conditioning frames for a model trained with context noise: the
    middle of its training range (0, exactly clean, for a model trained without). eval.py --context-t
    measures others; the manifest records the one served."""
    return cfg.context_noise // 2


def context_frames(frames, context_t, ab_all, gen):
    """Conditioning frames as the cache-write pass sees them: light noise at timestep context_t
    (0 = the frames themselves). Noise against drift: the model learnt not to trust every pixel of
    its history, and its own small errors look like that noise."""
    if not context_t:
        return frames
    z = torch.randn(frames.shape, generator=gen).to(frames.device)
    return q_sample(frames, z, ab_all[context_t])


def _guided(model, x, t, labels, pos, cache, guidance):
    """One model call; with guidance the batch is [conditional rows, null-label rows], combined."""
    out, kv = model.step(x, t, labels, pos, cache)
    if guidance is not None:
        cond, uncond = out.chunk(2)
        out = uncond + guidance * (cond - uncond)
    return out, kv


@torch.no_grad()
def generate(model, frames, label, init=None, steps=25, guidance=2.0, seed=0, use_cache=True, context_t=0):
    """Generate `frames` new frames after `init` (F0, C, H, W) for one label: (frames, C, H, W)."""
    init = init[None] if init is not None else None
    return generate_batch(model, frames, [label], init, steps, guidance, seed, use_cache, context_t=context_t)[0]


@torch.no_grad()
def generate_batch(model, frames, labels, init=None, steps=25, guidance=2.0, seed=0, use_cache=True, context_t=0,
                   chunk=None):
    """Generate `frames` new frames for N videos chunk by chunk, after `init` (N, F0, C, H, W).
    With use_cache the conditioning K/V are computed once per chunk (the t = 0 pass) and shared by
    all steps; without it every step recomputes all conditioning frames (the baseline). With
    context_t > 0 conditioning frames are lightly noised at that timestep first (context_frames).
    `chunk` frames are made per chunk (default: the trained chunk; any shorter length serves too).
    Returns (N, frames, C, H, W)."""
    cfg = model.cfg
    l = cfg.chunk if chunk is None else chunk
    if not 1 <= l <= cfg.chunk:                             # causal: l frames = the first l of a trained chunk
        raise ValueError(f"chunk must be 1..{cfg.chunk}, got {l}")
    dev = next(model.parameters()).device
    ab_all = cosine_alphas_cumprod().to(dev)
    ts = sample_timesteps(steps)
    n = len(labels)
    lab = torch.tensor(list(labels), device=dev)
    if guidance is not None:                                # rows: [conditional..., null...]
        lab = torch.cat([lab, torch.full_like(lab, cfg.num_labels)])
    rows = lab.shape[0]
    reps = rows // n
    shape = (cfg.channels, cfg.frame_size, cfg.frame_size)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    hist = init.to(dev) if init is not None else torch.zeros(n, 0, *shape, device=dev)    # (N, F, C, H, W)
    ctx_hist = context_frames(hist, context_t, ab_all, gen)   # what conditioning sees of hist
    kv = torch.zeros(0, cfg.depth, 2, rows, cfg.tokens, cfg.width, device=dev)   # frames-first K/V
    if use_cache and hist.shape[1]:
        kv = cache_write(model, ctx_hist.repeat(reps, 1, 1, 1, 1), lab, 0, t=context_t)
    made = 0
    while made < frames:
        start = hist.shape[1]                               # global index of the chunk's first frame
        x = torch.randn(n, l, *shape, generator=gen).to(dev)
        cache = model.cache_from_kv(kv)                     # one layout change per chunk, not per step
        for i, t in enumerate(ts):
            ab = ab_all[t]
            ab_prev = ab_all[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, device=dev)
            xx = x.repeat(reps, 1, 1, 1, 1)
            tt = torch.full((rows, l), float(t), device=dev)
            if use_cache:
                pred, _ = _guided(model, xx, tt, lab, torch.tensor([start], device=dev), cache, guidance)
            else:                                           # recompute the window's clean frames
                ctx = ctx_hist[:, max(0, start - cfg.p_max):].repeat(reps, 1, 1, 1, 1)
                xin = torch.cat([ctx, xx], 1)
                tin = torch.cat([torch.full((rows, ctx.shape[1]), float(context_t), device=dev), tt], 1)
                pred, _ = _guided(model, xin, tin, lab, torch.tensor([start - ctx.shape[1]], device=dev),
                                  model.empty_cache(rows, dev), guidance)
                pred = pred[:, -l:]
            x, _ = ddim_update(x, pred, ab, ab_prev)
        hist = torch.cat([hist, x], 1)
        xc = context_frames(x, context_t, ab_all, gen)
        ctx_hist = torch.cat([ctx_hist, xc], 1)
        if use_cache:
            new = cache_write(model, xc.repeat(reps, 1, 1, 1, 1), lab, start, cache, t=context_t)
            kv = torch.cat([kv, new], 0)[-cfg.p_max:]
        made += l
    return hist[:, hist.shape[1] - made:][:, :frames]


def cache_write(model, clean, labels, start, cache=None, t=0):
    """The t = 0 pass over clean frames (B, F, C, H, W) after `cache` (cache layout): their K/V in
    every layer, frames-first (F, depth, 2, B, N, D). With context noise, the frames carry noise of
    timestep t and are embedded at t."""
    dev = clean.device
    if cache is None:
        cache = model.empty_cache(clean.shape[0], dev)
    tt = torch.full((clean.shape[0], clean.shape[1]), float(t), device=dev)
    _, kv = model.step(clean, tt, labels, torch.tensor([start], device=dev), cache)
    return kv
