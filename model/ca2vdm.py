"""A small Ca2-VDM: spatial-temporal DiT with causal temporal attention and a shared K/V cache.

Read top to bottom: config, embedders, attention, the block, the model, positional embeddings,
size presets. One `forward` serves training, cached sampling, the cache-write pass (t = 0 on a
clean chunk) and the no-cache baseline; they differ only in the temporal attention mask and in
which cached K/V they attend to. The K/V a call returns are laid out frames-first, (F, depth, 2, B, N, D),
so stored segments concatenate along their first axis; the cache a call takes is in attention
layout, (depth, 2, B, N, H, P, hd), so no layer has to slice or transpose it (`cache_from_kv`).
"""
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F_


@dataclass
class Ca2Config:
    frame_size: int = 32      # square RGB frames; small, so a 2-core CPU can serve the model
    channels: int = 3
    patch: int = 4            # 4x4 patches -> 64 tokens per frame: few tokens train fastest
    width: int = 192          # hidden size D
    depth: int = 6            # number of blocks
    heads: int = 6            # head size = width / heads
    mlp_ratio: float = 4.0
    num_labels: int = 3       # label = number of balls - 1; index num_labels is the null label
    chunk: int = 4            # l: frames denoised per autoregressive step
    p_max: int = 12           # most conditioning frames kept in the cache (P_max >= 3l for >= 3x speedup)
    freq_dim: int = 128       # sinusoidal timestep features before the MLP
    context_noise: int = 0    # training: conditioning frames noised at t ~ U[0, this] (0 = always clean)
    pos_harmonics: int = 0    # harmonics of the cyclic temporal embedding (0 = l_train // 2, all distinct)

    @property
    def l_train(self):        # cyclic period of temporal positions: one full window
        return self.p_max + self.chunk

    @property
    def grid(self):           # patches per side
        return self.frame_size // self.patch

    @property
    def tokens(self):         # N: tokens per frame
        return self.grid * self.grid

    @property
    def head_dim(self):
        return self.width // self.heads


def norm(x, eps=1e-6):
    """LayerNorm without learned affine, from primitive ops (exports to a checker-clean ONNX graph)."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


def sinusoid(index, dim, max_period=10000.0):
    """Sinusoidal features of a float tensor of any shape -> (*shape, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32,
                                                           device=index.device) / half)
    args = index.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


# --------------------------------------------------------------------------------------------
# Embedders
# --------------------------------------------------------------------------------------------

class TimestepEmbedder(nn.Module):
    """Per-frame diffusion timestep -> vector (clean conditioning frames use t = 0)."""
    def __init__(self, cfg):
        super().__init__()
        self.freq_dim = cfg.freq_dim
        self.mlp = nn.Sequential(nn.Linear(cfg.freq_dim, cfg.width), nn.SiLU(),
                                 nn.Linear(cfg.width, cfg.width))

    def forward(self, t):                                  # t: (B, F)
        return self.mlp(sinusoid(t, self.freq_dim))        # (B, F, D)


class LabelEmbedder(nn.Module):
    """Class label -> vector; the extra row is the null label for classifier-free guidance."""
    def __init__(self, cfg):
        super().__init__()
        self.table = nn.Embedding(cfg.num_labels + 1, cfg.width)

    def forward(self, label):                              # label: (B,)
        return self.table(label)                           # (B, D)


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------

def attention(q, k, v, head_dim, mask=None):
    """softmax(q k^T / sqrt(head_dim)) v with an optional boolean mask (True = may attend).
    head_dim comes from the config, not from q's shape, so an exported graph holds no traced size."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(head_dim)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


class SpatialAttention(nn.Module):
    """Full self-attention among the tokens of one frame."""
    def __init__(self, cfg):
        super().__init__()
        self.heads, self.hd = cfg.heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x):                                  # x: (B, F, N, D)
        B, F, N, D = x.shape
        qkv = self.qkv(x).reshape(B * F, N, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4)
        out = attention(qkv[0], qkv[1], qkv[2], self.hd)   # (BF, H, N, hd)
        return self.proj(out.transpose(1, 2).reshape(B, F, N, D))


class CausalTemporalAttention(nn.Module):
    """Attention across frames at each patch position. Every query frame sees all cached K/V of
    earlier clean frames plus the frames of this call allowed by `mask`; the K/V of this call's
    frames are returned for the cache. Scores against the cache and against the new frames are
    computed apart and share one softmax, so the cache is only ever read by a matmul (never
    concatenated with the new K/V: that copy would cost a cached call more than its attention)."""
    def __init__(self, cfg):
        super().__init__()
        self.heads, self.hd = cfg.heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x, cache_k, cache_v, mask):
        # x: (B, F, N, D); cache_k/v: (B, N, H, P, hd) (attention layout) or None; mask: (F, F) bool
        B, F, N, D = x.shape
        P = 0 if cache_k is None else cache_k.shape[3]
        q, k, v = self.qkv(x).chunk(3, dim=-1)             # (B, F, N, D) each
        new_kv = torch.stack([k, v]).permute(2, 0, 1, 3, 4)  # (F, 2, B, N, D)

        def heads(z):                                      # (B, F, N, D) -> (B, N, H, F, hd)
            return z.reshape(B, F, N, self.heads, self.hd).permute(0, 2, 3, 1, 4)
        q, k, v = heads(q) / math.sqrt(self.hd), heads(k), heads(v)
        scores_new = (q @ k.transpose(-2, -1)).masked_fill(~mask, float("-inf"))  # (B, N, H, F, F)
        if cache_k is None:                                # training: the clip carries its own history
            out = scores_new.softmax(-1) @ v               # (B, N, H, F, hd)
        else:
            scores_cache = q @ cache_k.transpose(-2, -1)   # (B, N, H, F, P): every cached frame visible
            w = torch.cat([scores_cache, scores_new], -1).softmax(-1)
            out = w[..., :P] @ cache_v + w[..., P:] @ v    # (B, N, H, F, hd)
        out = out.permute(0, 3, 1, 2, 4).reshape(B, F, N, D)
        return self.proj(out), new_kv


class Mlp(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        hidden = int(cfg.width * cfg.mlp_ratio)
        self.fc1, self.fc2 = nn.Linear(cfg.width, hidden), nn.Linear(hidden, cfg.width)

    def forward(self, x):
        return self.fc2(F_.gelu(self.fc1(x), approximate="tanh"))


# --------------------------------------------------------------------------------------------
# Block and model
# --------------------------------------------------------------------------------------------

class Ca2Block(nn.Module):
    """adaLN-Zero block: spatial attention, causal temporal attention, MLP; each modulated per frame."""
    def __init__(self, cfg):
        super().__init__()
        self.spatial = SpatialAttention(cfg)
        self.temporal = CausalTemporalAttention(cfg)
        self.mlp = Mlp(cfg)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(cfg.width, 9 * cfg.width))

    def forward(self, x, c, cache_k, cache_v, mask):      # x: (B, F, N, D); c: (B, F, D)
        mods = self.ada(c)[:, :, None].chunk(9, dim=-1)    # 9 x (B, F, 1, D)
        x = x + mods[2] * self.spatial(modulate(norm(x), mods[0], mods[1]))
        h, kv = self.temporal(modulate(norm(x), mods[3], mods[4]), cache_k, cache_v, mask)
        x = x + mods[5] * h
        x = x + mods[8] * self.mlp(modulate(norm(x), mods[6], mods[7]))
        return x, kv                                       # (B, F, N, D), (F, 2, B, N, D)


class FinalLayer(nn.Module):
    """adaLN then a linear map from tokens back to patches."""
    def __init__(self, cfg):
        super().__init__()
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(cfg.width, 2 * cfg.width))
        self.linear = nn.Linear(cfg.width, cfg.patch * cfg.patch * cfg.channels)

    def forward(self, x, c):
        shift, scale = self.ada(c)[:, :, None].chunk(2, dim=-1)
        return self.linear(modulate(norm(x), shift, scale))


class Ca2VDM(nn.Module):
    def __init__(self, cfg: Ca2Config):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = nn.Linear(cfg.patch * cfg.patch * cfg.channels, cfg.width)
        self.t_embed = TimestepEmbedder(cfg)
        self.y_embed = LabelEmbedder(cfg)
        self.register_buffer("spatial_pos", spatial_pos_embed(cfg), persistent=False)
        self.blocks = nn.ModuleList([Ca2Block(cfg) for _ in range(cfg.depth)])
        self.final = FinalLayer(cfg)
        self.initialize_weights()

    def initialize_weights(self):
        # Linear layers: Xavier uniform, zero bias (as DiT).
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        # Label table: small normal, as DiT's class embedding.
        nn.init.normal_(self.y_embed.table.weight, std=0.02)
        # Timestep MLP: small normal so the conditioning signal starts moderate.
        nn.init.normal_(self.t_embed.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embed.mlp[2].weight, std=0.02)
        # adaLN-Zero: every block starts as the identity, so depth does not hurt early training.
        for blk in self.blocks:
            nn.init.zeros_(blk.ada[-1].weight)
            nn.init.zeros_(blk.ada[-1].bias)
        # Output layer at zero: the first prediction is 0, a safe start for any target.
        nn.init.zeros_(self.final.ada[-1].weight)
        nn.init.zeros_(self.final.ada[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    def patchify(self, x):                                 # x: (B, F, C, H, W)
        c, p, g = self.cfg.channels, self.cfg.patch, self.cfg.grid
        B, F = x.shape[0], x.shape[1]
        x = x.reshape(B, F, c, g, p, g, p).permute(0, 1, 3, 5, 4, 6, 2)
        return x.reshape(B, F, g * g, p * p * c)           # (B, F, N, p*p*C)

    def unpatchify(self, x):                               # x: (B, F, N, p*p*C)
        c, p, g = self.cfg.channels, self.cfg.patch, self.cfg.grid
        B, F = x.shape[0], x.shape[1]
        x = x.reshape(B, F, g, g, p, p, c).permute(0, 1, 6, 2, 4, 3, 5)
        return x.reshape(B, F, c, g * p, g * p)            # (B, F, C, H, W)

    def forward(self, x, t, label, frame_index, cache, mask):
        """x: (B, F, C, H, W); t: (B, F); label: (B,); frame_index: (F,) global frame indices;
        cache: (depth, 2, B, N, H, P, hd), or per layer a (K, V) pair of (B, N, H, P, hd), or None
        (no cached frames: the training pass, whose clip holds its own history);
        mask: (F, F) bool, which frames of x each frame of x sees (all cached frames are seen).
        Returns the prediction (B, F, C, H, W) and the K/V of x's frames (F, depth, 2, B, N, D)."""
        h = self.patch_embed(self.patchify(x))             # (B, F, N, D)
        h = h + self.spatial_pos + temporal_pos_embed(frame_index, self.cfg)[None, :, None]
        c = self.t_embed(t) + self.y_embed(label)[:, None]  # (B, F, D)
        kvs = []
        for i, blk in enumerate(self.blocks):
            ck, cv = (None, None) if cache is None else (cache[i][0], cache[i][1])
            h, kv = blk(h, c, ck, cv, mask)
            kvs.append(kv)
        out = self.unpatchify(self.final(h, c))            # (B, F, C, H, W)
        return out, torch.stack(kvs, 1)                    # (F, depth, 2, B, N, D)

    def step(self, x, t, label, pos, cache):
        """The exported step: x's frames follow the P cached frames; causal within x."""
        F = x.shape[1]
        frame_index = pos + torch.arange(F, device=x.device)                  # (F,)
        i = torch.arange(F, device=x.device)
        mask = i[None, :] <= i[:, None]                                      # (F, F) causal
        return self.forward(x, t, label, frame_index, cache, mask)

    def empty_cache(self, batch, device=None):
        cfg = self.cfg
        return torch.zeros(cfg.depth, 2, batch, cfg.tokens, cfg.heads, 0, cfg.head_dim, device=device)

    def cache_from_kv(self, kv):
        """K/V as returned, (P, depth, 2, B, N, D), to the cache layout (depth, 2, B, N, H, P, hd)."""
        cfg = self.cfg
        P, B = kv.shape[0], kv.shape[3]
        return kv.reshape(P, cfg.depth, 2, B, cfg.tokens, cfg.heads, cfg.head_dim).permute(1, 2, 3, 4, 5, 0, 6)


# --------------------------------------------------------------------------------------------
# Training: every chunk of a clip supervised at once, each conditioned on clean history
# --------------------------------------------------------------------------------------------

def teacher_forcing_mask(frames, chunk, device=None):
    """Mask over [clean frames 0..F-1, noisy frames 0..F-1] (2F x 2F). Clean frame i sees clean
    j <= i; noisy frame i in chunk c sees clean frames before chunk c and noisy j in chunk c, j <= i.
    Each noisy chunk thus sees exactly what it sees at inference (a cache of clean history)."""
    i = torch.arange(frames, device=device)
    causal = i[None, :] <= i[:, None]                                        # (F, F)
    same_chunk = (i[None, :] // chunk) == (i[:, None] // chunk)
    before_chunk = i[None, :] < (i[:, None] // chunk) * chunk
    top = torch.cat([causal, torch.zeros_like(causal)], 1)
    bottom = torch.cat([before_chunk, causal & same_chunk], 1)
    return torch.cat([top, bottom], 0)                                       # (2F, 2F)


def training_forward(model, clean, noisy, t, label, start, context_t=None):
    """clean, noisy: (B, F, C, H, W); t: (B, F) timesteps of the noisy frames; start: first cyclic index.
    `clean` is the conditioning stream; with context noise it carries light noise at timesteps
    context_t (B, F), as the cache-write pass does at inference (None = clean, t = 0).
    Returns the prediction for the noisy frames (B, F, C, H, W)."""
    B, F = clean.shape[:2]
    x = torch.cat([clean, noisy], 1)                                         # (B, 2F, C, H, W)
    tt = torch.cat([torch.zeros_like(t) if context_t is None else context_t.to(t.dtype), t], 1)   # (B, 2F)
    idx = start + torch.arange(F, device=clean.device)
    mask = teacher_forcing_mask(F, model.cfg.chunk, clean.device)
    out, _ = model(x, tt, label, torch.cat([idx, idx]), None, mask)
    return out[:, F:]


# --------------------------------------------------------------------------------------------
# Positional embeddings
# --------------------------------------------------------------------------------------------

def temporal_pos_embed(frame_index, cfg):
    """Cyclic sinusoidal embedding: index = global frame index mod L_train, period L_train, so a
    cached frame keeps its embedding while the window slides."""
    phase = torch.remainder(frame_index, cfg.l_train).float()                # (F,)
    half = cfg.width // 2
    k = torch.arange(1, half + 1, dtype=torch.float32, device=frame_index.device)
    # Harmonics of the period (capped, then repeated); the first alone keeps every position distinct.
    # A model widened from a trained one keeps that one's cap: its embedding is then the old one
    # sampled at a finer phase step (l_train_old / l_train), a small change for fine-tuning to absorb.
    k = torch.remainder(k - 1, cfg.pos_harmonics or cfg.l_train // 2) + 1
    ang = 2 * math.pi * phase[:, None] * k[None] / cfg.l_train               # (F, D/2)
    return torch.cat([torch.cos(ang), torch.sin(ang)], -1)                   # (F, D)


def spatial_pos_embed(cfg):
    """Fixed 2D sin-cos embedding of patch coordinates (N, D)."""
    g = torch.arange(cfg.grid, dtype=torch.float32)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    half = cfg.width // 2
    return torch.cat([sinusoid(yy.reshape(-1), half, 100.0), sinusoid(xx.reshape(-1), half, 100.0)], -1)


# --------------------------------------------------------------------------------------------
# Size presets
# --------------------------------------------------------------------------------------------

PRESETS = {
    "test": dict(width=48, depth=2, heads=2),            # unit tests: builds and runs in milliseconds
    "small": dict(width=192, depth=6, heads=6),          # the shipped model (~4M parameters)
    "base": dict(width=256, depth=8, heads=8),
}


def build(preset="small", **overrides):
    cfg = Ca2Config(**{**PRESETS[preset], **overrides})
    return Ca2VDM(cfg)


def config_dict(cfg):
    return asdict(cfg)
