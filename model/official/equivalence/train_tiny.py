"""A few hundred steps of the official training loss on synthetic latents, so that the small
official network's eps prediction follows the noise, as a trained model's does.

With random weights the eps output has nothing to do with the noise, IDDPM's unclipped
x0 = x_t / sqrt(alpha_bar) grows to ~1e3 and sampling amplifies any last-bit difference between two
evaluations of the same function. A briefly trained network keeps the sample O(1), which is what a
real checkpoint does, so the end-to-end comparison measures the implementation, not the chaos.

The loss is the official one (`CleanPrefixIDDPM.training_losses_clean_prefix`: eps MSE plus the
variational bound for the learned variance), on clips laid out as the official trainer lays them
(`clean_prefix`, `clean_prefix_set_t0`, `fix_ar_size`): a clean prefix of 1, 5 or 8 frames
(the prefix lengths the sampler meets with chunks of 4 and P_max 8), then one chunk of noisy frames,
with the mask channel, per-frame timesteps and the loss mask. (The official trainer pads clips to
one length; temporal attention is causal, so padding after the chunk changes nothing before it, and
leaving it out saves about a quarter of the time.)
"""
import math
import random

import torch
from opensora.schedulers.iddpm import CleanPrefixIDDPM


def blobs(batch, frames, channels, size, gen):
    """(B, C, T, H, W) latents: two Gaussian blobs per clip moving in straight lines, each with its
    own amplitude per channel, on a per-channel offset. Smooth in space and time, values O(1)."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    t = torch.arange(frames, dtype=torch.float32)[None, None, :, None, None]
    out = 0.3 * torch.randn(batch, channels, 1, 1, 1, generator=gen).expand(batch, channels, frames, size, size).clone()
    for _ in range(2):
        p0 = torch.rand(batch, 2, generator=gen) * size
        v = (torch.rand(batch, 2, generator=gen) - 0.5) * 2.0                  # up to 1 latent pixel a frame
        amp = torch.randn(batch, channels, generator=gen)
        width = 1.5 + 2.0 * torch.rand(batch, generator=gen)
        cy = (p0[:, 0, None, None, None, None] + v[:, 0, None, None, None, None] * t) % size
        cx = (p0[:, 1, None, None, None, None] + v[:, 1, None, None, None, None] * t) % size
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        out = out + amp[:, :, None, None, None] * torch.exp(-d2 / (2 * width[:, None, None, None, None] ** 2))
    return out


def train(model, steps, chunk, prefix_lens=(1, 5, 8), batch=4, lr=2e-3, context_t=50, seed=0, log=None):
    """Train `model` (an official CausalSTDiT2 without captions) in place; returns the loss curve."""
    sch = CleanPrefixIDDPM(timestep_respacing="")
    gen = torch.Generator().manual_seed(seed)
    random.seed(seed)                                 # the official cyclic start of 12-frame clips draws from it
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps)))   # cosine to 0
    C, size = model.in_channels, model.input_size[1]
    curve = []
    model.train()
    for i in range(steps):
        p = prefix_lens[i % len(prefix_lens)]
        T = p + chunk
        x = blobs(batch, T, C, size, gen)
        mask_channel = torch.zeros(batch, 1, T, 1, 1)
        mask_channel[:, :, :p] = 1
        loss_mask = torch.zeros(batch, C, T, size, size)
        loss_mask[:, :, p:] = 1
        t = torch.randint(0, sch.num_timesteps, (batch,), generator=gen)
        t_input = t[:, None].repeat(1, T)
        t_input[:, :p] = 0
        noise = torch.randn(x.shape, generator=gen)
        kwargs = dict(y=None, mask_channel=mask_channel, loss_mask=loss_mask, t_input=t_input,
                      prefix_perturb_t=context_t, x_temporal_start=0)
        torch.manual_seed(seed * 100003 + i)          # the official loss draws the context noise itself
        loss = sch.training_losses_clean_prefix(model, x, t, model_kwargs=kwargs, noise=noise)["loss"].mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay.step()
        curve.append(float(loss))
        if log and (i % 50 == 0 or i == steps - 1):
            log(f"  train step {i}: loss {float(loss):.4f}")
    model.eval()
    return curve
