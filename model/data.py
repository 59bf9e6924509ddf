"""Procedural training data: coloured balls bouncing elastically inside a small frame.

Every video is fully determined by a parameter set (count, colours, radii, start positions,
velocities), so a seed gives the same video on any machine and for any number of frames.
Rendering is vectorised torch, so a batch of clips is made on the training device itself.
"""
import numpy as np
import torch

# Distinct, saturated colours so that eval can find each ball by colour alone.
PALETTE = torch.tensor([
    [1.0, 0.2, 0.2],   # red
    [0.2, 1.0, 0.2],   # green
    [0.3, 0.4, 1.0],   # blue
    [1.0, 1.0, 0.2],   # yellow
    [0.2, 1.0, 1.0],   # cyan
    [1.0, 0.3, 1.0],   # magenta
])
MAX_BALLS = 3
LABELS = ["1 ball", "2 balls", "3 balls"]   # label index = number of balls - 1
RADIUS = (3.0, 5.0)                         # pixels, uniform
SPEED = (0.7, 1.8)                          # pixels per frame, uniform


def sample_params(batch, size, generator=None, device="cpu"):
    """Draw ball parameters for `batch` videos. Unused ball slots have radius 0."""
    g = dict(generator=generator, device=device)
    count = torch.randint(1, MAX_BALLS + 1, (batch,), **g)                        # (B,)
    colour = torch.argsort(torch.rand(batch, len(PALETTE), **g), dim=1)[:, :MAX_BALLS]  # (B, 3) distinct
    radius = RADIUS[0] + (RADIUS[1] - RADIUS[0]) * torch.rand(batch, MAX_BALLS, **g)
    radius = radius * (torch.arange(MAX_BALLS, device=device)[None] < count[:, None])  # (B, 3)
    lo = radius
    span = (size - 2 * radius).clamp(min=1e-3)
    start = lo[..., None] + span[..., None] * torch.rand(batch, MAX_BALLS, 2, **g)  # (B, 3, 2)
    angle = 2 * np.pi * torch.rand(batch, MAX_BALLS, **g)
    speed = SPEED[0] + (SPEED[1] - SPEED[0]) * torch.rand(batch, MAX_BALLS, **g)
    velocity = torch.stack([torch.cos(angle), torch.sin(angle)], -1) * speed[..., None]  # (B, 3, 2)
    return dict(count=count, colour=colour, radius=radius, start=start, velocity=velocity)


def positions(params, frames, size, first=0):
    """Ball centres for frames [first, first + frames): elastic bounces as a triangle wave."""
    r = params["radius"][..., None]                                           # (B, 3, 1)
    span = (size - 2 * r).clamp(min=1e-3)
    t = torch.arange(first, first + frames, dtype=torch.float32,
                     device=r.device)                                         # (F,)
    u = params["start"][:, :, None, :] - r[..., None] + params["velocity"][:, :, None, :] * t[:, None]
    u = torch.remainder(u, 2 * span[..., None])                               # (B, 3, F, 2)
    u = torch.where(u > span[..., None], 2 * span[..., None] - u, u)
    return u + r[..., None]                                                   # (B, 3, F, 2)


def render(params, frames, size=32, first=0):
    """Videos (B, F, 3, H, W) in [-1, 1]: black background, anti-aliased filled balls."""
    centre = positions(params, frames, size, first)                           # (B, 3, F, 2)
    device = centre.device
    pix = torch.arange(size, dtype=torch.float32, device=device) + 0.5
    dx = pix[None, None, None, None, :] - centre[..., 0, None, None]          # (B, 3, F, 1, W)
    dy = pix[None, None, None, :, None] - centre[..., 1, None, None]          # (B, 3, F, H, 1)
    dist = torch.sqrt(dx * dx + dy * dy)                                      # (B, 3, F, H, W)
    alpha = (params["radius"][:, :, None, None, None] - dist + 0.5).clamp(0, 1)
    colour = PALETTE.to(device)[params["colour"]]                             # (B, 3, 3)
    img = torch.zeros(centre.shape[0], frames, 3, size, size, device=device)  # (B, F, 3, H, W)
    for b in range(MAX_BALLS):  # later balls are drawn over earlier ones
        a = alpha[:, b, :, None]                                              # (B, F, 1, H, W)
        img = img * (1 - a) + a * colour[:, b, None, :, None, None]
    return img * 2 - 1


def params_from_seed(seed, size=32):
    """The parameter set of video `seed`: reproducible across machines and torch versions."""
    rng = np.random.RandomState(seed)
    count = rng.randint(1, MAX_BALLS + 1)
    colour = rng.permutation(len(PALETTE))[:MAX_BALLS]
    radius = rng.uniform(*RADIUS, MAX_BALLS) * (np.arange(MAX_BALLS) < count)
    start = radius[:, None] + (size - 2 * radius)[:, None] * rng.uniform(0, 1, (MAX_BALLS, 2))
    angle = rng.uniform(0, 2 * np.pi, MAX_BALLS)
    speed = rng.uniform(*SPEED, MAX_BALLS)
    velocity = np.stack([np.cos(angle), np.sin(angle)], -1) * speed[:, None]
    f = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)[None]
    return dict(count=torch.tensor([count]), colour=torch.tensor(colour)[None].long(),
                radius=f(radius), start=f(start), velocity=f(velocity))


def make_video(seed, frames, size=32):
    """One video (F, 3, H, W) in [-1, 1] and its label index (balls - 1)."""
    params = params_from_seed(seed, size)
    return render(params, frames, size)[0], int(params["count"][0]) - 1


def batch(n, frames, size=32, generator=None, device="cpu"):
    """A training batch: videos (B, F, 3, H, W) and labels (B,)."""
    params = sample_params(n, size, generator, device)
    return render(params, frames, size), params["count"] - 1


def find_balls(frame, tol=0.3, min_pixels=5):
    """Balls found by colour in one frame (3, H, W) in [-1, 1]: {palette index: (x, y) centre}."""
    img = (frame.clamp(-1, 1) + 1) / 2                                        # (3, H, W)
    found = {}
    for i, c in enumerate(PALETTE):
        mask = ((img - c[:, None, None]).abs().amax(0) < tol)                 # (H, W)
        if int(mask.sum()) >= min_pixels:
            ys, xs = torch.nonzero(mask, as_tuple=True)
            found[i] = (float(xs.float().mean()) + 0.5, float(ys.float().mean()) + 0.5)
    return found
