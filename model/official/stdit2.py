"""The official Ca2-VDM network (causal STDiT2), written for export: one step graph with both caches explicit.

Read top to bottom: config, helpers, embedders, attention (spatial, prefix-enhanced spatial, causal
temporal, cross), the block, the model, positional embeddings, size presets. Parameter and buffer
names and shapes are those of the official `CausalSTDiT2` state_dict (Dawn-LX/CausalCache-VDM,
opensora/models/causal_stdit2), so a checkpoint trained there loads with `load_state_dict(strict=True)`.
The one step serves every call the official inference makes:
- a denoising call (`clean` = 0): the noisy chunk after the cached frames; spatial prefix
  enhancement attends to the K/V of the last `prefix_frames` clean frames (the prefix cache);
- the cache-write pass (`clean` = 1, t = 0): the clean chunk after the cached frames; its per-frame
  temporal K/V (`kv`) and spatial K/V (`kv_prefix`) go to the caches.
Temporal keys are cached before any rotary rotation (the official model rotates at attention time,
by each frame's position in the window), so a cached frame's K/V never change once written.
"""
import math
from dataclasses import asdict, dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F_


@dataclass
class STDiT2Config:
    latent_size: Tuple[int, int] = (32, 32)  # latent H, W (official input_size[1:]): SD-VAE of 256x256 frames
    in_channels: int = 4            # SD-VAE latent channels
    patch: int = 2                  # spatial patch (official patch_size (1, p, p)); temporal patch 1 is all a cache can serve
    hidden_size: int = 1152         # width D
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    pred_sigma: bool = True         # learned variance: the output has 2 * in_channels (eps, variance value)
    caption_channels: int = 0       # 4096 with T5 text; 0 = no cross-attention (the SkyTimelapse configs)
    model_max_length: int = 120     # caption tokens (and rows of the learned null embedding)
    max_tpe_len: int = 33           # temporal position period L (cyclic) / rotary table length (rope)
    relative_tpe_mode: str = "cyclic"  # "cyclic": sinusoid at (frame mod L) added in block 0; "rope": rotary at attention time
    temp_extra_in_channels: int = 1    # the clean/noisy mask channel concatenated before temporal attention
    temp_extra_in_all_block: bool = False  # that channel in every block (else only block 0, as the official configs)
    spatial_attn_enhance: Optional[str] = "prev_frames_3"  # prefix-enhanced spatial attention over the last k clean frames
    space_scale: float = 1.0        # divides the spatial sincos grid (official space_scale)
    time_scale: float = 1.0         # divides the temporal sincos positions (official time_scale)
    chunk: int = 8                  # l: frames denoised per autoregressive step (serving)
    p_max: int = 25                 # most cached frames (official kv_cache_max_seqlen)

    @property
    def grid(self):                 # patches per side (h, w)
        return (self.latent_size[0] // self.patch, self.latent_size[1] // self.patch)

    @property
    def tokens(self):               # S: tokens per frame
        return self.grid[0] * self.grid[1]

    @property
    def head_dim(self):
        return self.hidden_size // self.num_heads

    @property
    def out_channels(self):
        return self.in_channels * 2 if self.pred_sigma else self.in_channels

    @property
    def prefix_frames(self):        # T_p: frames the spatial prefix cache holds (0 = no enhancement)
        if self.spatial_attn_enhance is None:
            return 0
        return int(self.spatial_attn_enhance.split("_")[-1])

    def mask_channel_in(self, i):   # does block i concatenate the mask channel before temporal attention
        return self.temp_extra_in_channels > 0 and (i == 0 or self.temp_extra_in_all_block)


def norm(x, eps=1e-6):
    """LayerNorm without affine from primitive ops (torch 1.13 exports the affine-free op badly)."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


def attention(q, k, v, head_dim, mask=None):
    """softmax(q k^T / sqrt(head_dim)) v; mask: bool, True = may attend. head_dim comes from the
    config, not from q's shape, so an exported graph holds no traced size."""
    scores = (q / math.sqrt(head_dim)) @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


def rotate(x, pos, freqs):
    """Rotary embedding: pairs (x[2i], x[2i+1]) turned by pos * freqs[i]. x: (..., T, hd); pos: (T,);
    freqs: (hd,), each frequency twice. Written as x cos + (x R) sin with R the pair swap (-odd, even),
    so the graph never reshapes x (an empty cache has T = 0)."""
    ang = pos.float()[:, None] * freqs[None]                                   # (T, hd)
    hd = freqs.shape[0]
    swap = torch.zeros(hd, hd)
    swap[torch.arange(1, hd, 2), torch.arange(0, hd, 2)] = -1.0               # even_out += -odd_in * sin
    swap[torch.arange(0, hd, 2), torch.arange(1, hd, 2)] = 1.0                # odd_out += even_in * sin
    return x * torch.cos(ang) + (x @ swap) * torch.sin(ang)


class Linear2(nn.Module):
    """Two linear layers with tanh-GELU between (timm's Mlp without dropout: keys fc1, fc2)."""
    def __init__(self, d_in, d_hidden, d_out):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_in, d_hidden), nn.Linear(d_hidden, d_out)

    def forward(self, x):
        return self.fc2(F_.gelu(self.fc1(x), approximate="tanh"))


# --------------------------------------------------------------------------------------------
# Embedders
# --------------------------------------------------------------------------------------------

class PatchEmbed(nn.Module):
    """Latent patches -> tokens. Kept as the official Conv3d's parameter (key x_embedder.proj),
    applied as one matmul over patchified frames (the same map, and a plain MatMul in ONNX)."""
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Conv3d(cfg.in_channels, cfg.hidden_size, kernel_size=(1, cfg.patch, cfg.patch),
                              stride=(1, cfg.patch, cfg.patch))

    def forward(self, x):                                  # x: (B, F, C, H, W)
        cfg = self.cfg
        (gh, gw), p, c = cfg.grid, cfg.patch, cfg.in_channels
        B, F = x.shape[0], x.shape[1]
        x = x.reshape(B, F, c, gh, p, gw, p).permute(0, 1, 3, 5, 2, 4, 6)     # (B, F, gh, gw, C, p, p)
        x = x.reshape(B, F, gh * gw, c * p * p)           # (B, F, S, C*p*p): the conv weight's order
        w = self.proj.weight.reshape(cfg.hidden_size, -1)
        return x @ w.t() + self.proj.bias                  # (B, F, S, D)


class TimestepEmbedder(nn.Module):
    """Per-frame diffusion timestep -> vector (256 sinusoid features, cos then sin, then an MLP)."""
    def __init__(self, cfg, freq_dim=256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, cfg.hidden_size), nn.SiLU(),
                                 nn.Linear(cfg.hidden_size, cfg.hidden_size))

    def forward(self, t):                                  # t: (B, F)
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        args = t.float()[..., None] * freqs                # (B, F, half)
        emb = torch.cat([torch.cos(args), torch.sin(args)], -1).to(self.mlp[0].weight.dtype)   # as the official casts
        return self.mlp(emb)                               # (B, F, D)


class CaptionEmbedder(nn.Module):
    """Conditioning embedding (T5 tokens) -> width. `y_embedding` is the learned null embedding,
    what the model conditions on without a prompt."""
    def __init__(self, cfg):
        super().__init__()
        self.y_proj = Linear2(cfg.caption_channels, cfg.hidden_size, cfg.hidden_size)
        self.register_buffer("y_embedding", torch.randn(cfg.model_max_length, cfg.caption_channels)
                             / cfg.caption_channels ** 0.5)

    def forward(self, y):                                  # y: (B, Ny, Cy)
        return self.y_proj(y)                              # (B, Ny, D)


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------

class SpatialAttention(nn.Module):
    """Full self-attention among the tokens of one frame (key attn)."""
    def __init__(self, cfg):
        super().__init__()
        self.h, self.hd = cfg.num_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x):                                  # x: (B, F, S, D)
        B, F, S, D = x.shape
        q, k, v = self.qkv(x).reshape(B, F, S, 3, self.h, self.hd).permute(3, 0, 1, 4, 2, 5).unbind(0)  # (B, F, H, S, hd)
        out = attention(q, k, v, self.hd)                  # (B, F, H, S, hd)
        return self.proj(out.transpose(2, 3).reshape(B, F, S, D))


class PrefixSpatialAttention(nn.Module):
    """Prefix-enhanced spatial attention (key attn_cf). A clean frame attends to its own tokens;
    a noisy frame to the spatial K/V of the last T_p clean frames (the prefix cache). Returns the
    K/V of every frame's own tokens for that cache."""
    def __init__(self, cfg):
        super().__init__()
        self.h, self.hd = cfg.num_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x, clean, prefix_k, prefix_v):
        # x: (B, F, S, D); clean: (B, F) 1/0; prefix_k/v: (B, S, H, T_p, hd) (attention layout)
        B, F, S, D = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)             # (B, F, S, D) each
        new_kv = torch.stack([k, v]).permute(2, 0, 1, 3, 4)  # (F, 2, B, S, D)

        def heads(z):                                      # (B, F, S, D) -> (B, F, H, S, hd)
            return z.reshape(B, F, S, self.h, self.hd).transpose(2, 3)
        q, k, v = heads(q), heads(k), heads(v)
        own = attention(q, k, v, self.hd)                  # (B, F, H, S, hd)
        pk = prefix_k.permute(0, 2, 3, 1, 4).reshape(B, 1, self.h, -1, self.hd)  # (B, 1, H, T_p*S, hd)
        pv = prefix_v.permute(0, 2, 3, 1, 4).reshape(B, 1, self.h, -1, self.hd)
        pre = attention(q, pk, pv, self.hd)                # (B, F, H, S, hd)
        out = torch.where(clean[:, :, None, None, None] > 0.5, own, pre)
        return self.proj(out.transpose(2, 3).reshape(B, F, S, D)), new_kv


class CausalTemporalAttention(nn.Module):
    """Attention across frames at each patch position (key attn_temp): every query frame sees all
    cached frames and the frames of this call up to itself. Scores against the cache and against
    the new frames share one softmax, so the cache is only read by a matmul. With rotary positions
    (rope), cached keys arrive un-rotated and are turned by their window position here."""
    def __init__(self, cfg):
        super().__init__()
        self.h, self.hd = cfg.num_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x, cache_k, cache_v, rope=None):
        # x: (B, F, S, D); cache_k/v: (B, S, H, P, hd); rope: None or (freqs, q_pos (F,), k_pos (F,), cache_pos (P,))
        B, F, S, D = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)             # (B, F, S, D) each
        new_kv = torch.stack([k, v]).permute(2, 0, 1, 3, 4)  # (F, 2, B, S, D): un-rotated, as cached

        def heads(z):                                      # (B, F, S, D) -> (B, S, H, F, hd)
            return z.reshape(B, F, S, self.h, self.hd).permute(0, 2, 3, 1, 4)
        q, k, v = heads(q), heads(k), heads(v)
        if rope is not None:
            freqs, q_pos, k_pos, cache_pos = rope
            q, k, cache_k = rotate(q, q_pos, freqs), rotate(k, k_pos, freqs), rotate(cache_k, cache_pos, freqs)
        q = q / math.sqrt(self.hd)
        i = torch.arange(F)
        causal = i[None, :] <= i[:, None]                  # (F, F)
        scores_new = (q @ k.transpose(-2, -1)).masked_fill(~causal, float("-inf"))  # (B, S, H, F, F)
        scores_cache = q @ cache_k.transpose(-2, -1)       # (B, S, H, F, P)
        P = cache_k.shape[3]
        w = torch.cat([scores_cache, scores_new], -1).softmax(-1)
        out = w[..., :P] @ cache_v + w[..., P:] @ v        # (B, S, H, F, hd)
        return self.proj(out.permute(0, 3, 1, 2, 4).reshape(B, F, S, D)), new_kv


class CrossAttention(nn.Module):
    """Tokens attend to the conditioning embedding of their own batch row (key cross_attn)."""
    def __init__(self, cfg):
        super().__init__()
        self.h, self.hd = cfg.num_heads, cfg.head_dim
        self.q_linear = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.kv_linear = nn.Linear(cfg.hidden_size, 2 * cfg.hidden_size)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x, y):                               # x: (B, F, S, D); y: (B, Ny, D)
        B, F, S, D = x.shape
        q = self.q_linear(x).reshape(B, F * S, self.h, self.hd).transpose(1, 2)          # (B, H, FS, hd)
        k, v = self.kv_linear(y).reshape(B, -1, 2, self.h, self.hd).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, Ny, hd)
        out = attention(q, k, v, self.hd).transpose(1, 2).reshape(B, F, S, D)
        return self.proj(out)


# --------------------------------------------------------------------------------------------
# Block and model
# --------------------------------------------------------------------------------------------

class STDiT2Block(nn.Module):
    """Spatial, prefix-enhanced spatial and causal temporal attention (one gate), cross-attention, MLP."""
    def __init__(self, cfg, index):
        super().__init__()
        D = cfg.hidden_size
        self.attn = SpatialAttention(cfg)
        if cfg.caption_channels > 0:
            self.cross_attn = CrossAttention(cfg)
        self.mlp = Linear2(D, int(D * cfg.mlp_ratio), D)
        self.scale_shift_table = nn.Parameter(torch.randn(6, D) / D ** 0.5)
        self.attn_temp = CausalTemporalAttention(cfg)
        if cfg.spatial_attn_enhance is not None:
            self.attn_cf = PrefixSpatialAttention(cfg)
        if cfg.mask_channel_in(index):
            self.attn_temp_pre_merge = nn.Linear(D + cfg.temp_extra_in_channels, D)

    def forward(self, x, t6, clean, tpe, y, cache, prefix, rope):
        # x: (B, F, S, D); t6: (B, F, 6D); clean: (B, F); tpe: (F, D) or None; y: (B, Ny, D) or None
        B, F, S, D = x.shape
        mods = (self.scale_shift_table + t6.reshape(B, F, 6, D))[:, :, None]   # (B, F, 1, 6, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods.unbind(3)  # (B, F, 1, D) each
        x = x + gate_msa * self.attn(modulate(norm(x), shift_msa, scale_msa))   # (B, F, S, D)
        kv_prefix = None
        if hasattr(self, "attn_cf"):
            h, kv_prefix = self.attn_cf(x, clean, *prefix)
            x = x + gate_msa * h
        xt = x if tpe is None else x + tpe[None, :, None]  # (B, F, S, D)
        if hasattr(self, "attn_temp_pre_merge"):
            m = clean[:, :, None, None].expand(B, F, S, 1)  # (B, F, S, 1): 1 clean, 0 noisy
            xt = self.attn_temp_pre_merge(torch.cat([xt, m], -1))
        h, kv = self.attn_temp(xt, *cache, rope=rope)
        x = x + gate_msa * h
        if hasattr(self, "cross_attn"):
            x = x + self.cross_attn(x, y)
        x = x + gate_mlp * self.mlp(modulate(norm(x), shift_mlp, scale_mlp))
        return x, kv, kv_prefix                            # (B, F, S, D), (F, 2, B, S, D) x 2


class FinalLayer(nn.Module):
    """Per-frame modulation by the timestep embedding, then tokens -> patches (eps and variance)."""
    def __init__(self, cfg):
        super().__init__()
        D = cfg.hidden_size
        self.linear = nn.Linear(D, cfg.patch * cfg.patch * cfg.out_channels)
        self.scale_shift_table = nn.Parameter(torch.randn(2, D) / D ** 0.5)

    def forward(self, x, t):                               # x: (B, F, S, D); t: (B, F, D)
        shift, scale = (self.scale_shift_table + t[:, :, None, None]).unbind(3)  # (B, F, 1, D) each
        return self.linear(modulate(norm(x), shift, scale))  # (B, F, S, p*p*C_out)


class CausalSTDiT2(nn.Module):
    def __init__(self, cfg: STDiT2Config):
        super().__init__()
        self.cfg = cfg
        D = cfg.hidden_size
        # Buffers the official model keeps in its state_dict (so they load, and are checked, with it).
        self.register_buffer("pos_embed", torch.from_numpy(spatial_pos_embed(cfg)).float()[None])
        self.register_buffer("pos_embed_temporal", torch.from_numpy(temporal_pos_embed(cfg)).float()[None])
        self.register_buffer("bov_token", torch.randn(cfg.in_channels, *cfg.latent_size) / cfg.in_channels ** 0.5)
        self.x_embedder = PatchEmbed(cfg)
        self.t_embedder = TimestepEmbedder(cfg)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))
        if cfg.caption_channels > 0:
            self.y_embedder = CaptionEmbedder(cfg)
        self.blocks = nn.ModuleList([STDiT2Block(cfg, i) for i in range(cfg.depth)])
        self.final_layer = FinalLayer(cfg)
        if cfg.relative_tpe_mode == "rope":                # not in the state_dict (the official one is not either)
            hd = cfg.head_dim
            freqs = 1.0 / 10000.0 ** (torch.arange(0, hd, 2).float() / hd)
            self.register_buffer("rope_freqs", freqs.repeat_interleave(2), persistent=False)   # (hd,)
        self.initialize_weights()

    def initialize_weights(self):
        # Linear layers: Xavier uniform, zero bias; the patch embedding like a linear layer.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        # Timestep MLPs: small normal, so the conditioning starts moderate.
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        nn.init.normal_(self.t_block[1].weight, std=0.02)
        # Branches added to the residual stream start at zero, so a new branch changes nothing at first.
        for blk in self.blocks:
            for branch in ("cross_attn", "attn_temp", "attn_cf"):
                if hasattr(blk, branch):
                    nn.init.zeros_(getattr(blk, branch).proj.weight)
                    nn.init.zeros_(getattr(blk, branch).proj.bias)
            # The mask channel's merge starts as the identity on the hidden part.
            if hasattr(blk, "attn_temp_pre_merge"):
                pm = blk.attn_temp_pre_merge
                nn.init.zeros_(pm.weight)
                nn.init.zeros_(pm.bias)
                pm.weight.data[:, :self.cfg.hidden_size] = torch.eye(self.cfg.hidden_size)
        # Output layer at zero: the first prediction is 0.
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def unpatchify(self, x):                               # x: (B, F, S, p*p*C_out)
        cfg = self.cfg
        (gh, gw), p, c = cfg.grid, cfg.patch, cfg.out_channels
        B, F = x.shape[0], x.shape[1]
        x = x.reshape(B, F, gh, gw, p, p, c).permute(0, 1, 6, 2, 4, 3, 5)  # (B, F, C, gh, p, gw, p)
        return x.reshape(B, F, c, gh * p, gw * p)          # (B, F, C_out, H, W)

    def step(self, x, t, clean, pos, y, cache, prefix, cache_pos=None):
        """One call after the P cached frames. x: (B, F, C, H, W) latents; t: (B, F) timesteps;
        clean: (B, F) 1 for the cache-write pass, 0 for denoising; pos: (1,) int, global index of x's
        first frame (= frames written before it); y: (B, Ny, Cy) raw conditioning or None;
        cache: per layer (K, V) of (B, S, H, P, hd), un-rotated; prefix: per layer (K, V) of
        (B, S, H, T_p, hd) or None; cache_pos: (P,) int, each cached frame's position in the window
        (rope only; 0 = oldest). Returns the prediction (B, F, C_out, H, W) and the frames' temporal
        and spatial K/V, frames-first (F, depth, 2, B, S, D) each (the spatial one None without enhancement)."""
        cfg = self.cfg
        B, F = x.shape[0], x.shape[1]
        h = self.x_embedder(x) + self.pos_embed[:, None]   # (B, F, S, D)
        te = self.t_embedder(t)                            # (B, F, D)
        t6 = self.t_block(te)                              # (B, F, 6D)
        y = self.y_embedder(y) if cfg.caption_channels > 0 else None  # (B, Ny, D)
        frames = pos + torch.arange(F)                     # (F,) global indices
        tpe, rope = None, None
        if cfg.relative_tpe_mode == "cyclic":
            tpe = self.pos_embed_temporal[0, frames % cfg.max_tpe_len]  # (F, D)
        else:
            # Window positions as the official rotary queue: keys 0..P+F-1 in order, queries end at
            # min(pos + F, L) (equal to the keys' once the window is full at P_max + F = L).
            P = cache[0][0].shape[3]
            q_end = torch.clamp(pos + F, max=cfg.max_tpe_len)
            rope = (self.rope_freqs, q_end - F + torch.arange(F), P + torch.arange(F), cache_pos)
        kvs, kvps = [], []
        for i, blk in enumerate(self.blocks):
            h, kv, kvp = blk(h, t6, clean, tpe if i == 0 else None, y, cache[i],
                             None if prefix is None else prefix[i], rope)
            kvs.append(kv)
            kvps.append(kvp)
        out = self.unpatchify(self.final_layer(h, te))     # (B, F, C_out, H, W)
        kv_prefix = torch.stack(kvps, 1) if cfg.prefix_frames else None
        return out, torch.stack(kvs, 1), kv_prefix         # (F, depth, 2, B, S, D)

    def empty_cache(self, batch, frames=0):
        """Per-layer (K, V) pairs of `frames` zero frames in attention layout (B, S, H, P, hd)."""
        cfg = self.cfg
        z = torch.zeros(batch, cfg.tokens, cfg.num_heads, frames, cfg.head_dim, dtype=self.pos_embed.dtype)
        return [(z, z) for _ in range(cfg.depth)]

    def cache_from_kv(self, kv):
        """K/V as returned, (P, depth, 2, B, S, D), -> per-layer (K, V) of (B, S, H, P, hd)."""
        cfg = self.cfg
        P, B = kv.shape[0], kv.shape[3]
        c = kv.reshape(P, cfg.depth, 2, B, cfg.tokens, cfg.num_heads, cfg.head_dim).permute(1, 2, 3, 4, 5, 0, 6)
        return [(c[i, 0], c[i, 1]) for i in range(cfg.depth)]


def prefix_frame_indices(written, prefix_frames):
    """Which frames of the last written chunk (`written` frames) fill the spatial prefix cache, as the
    official model keeps it: the last T_p frames, or each frame repeated in order when fewer."""
    if written >= prefix_frames:
        return list(range(written - prefix_frames, written))
    rep = prefix_frames // written + 1
    return [i // rep for i in range(prefix_frames)]


# --------------------------------------------------------------------------------------------
# Positional embeddings (the official sincos tables; loaded from a checkpoint when it has them)
# --------------------------------------------------------------------------------------------

def sincos_1d(dim, pos):
    """sin then cos of pos * 10000^(-2i/dim), float64 -> (len(pos), dim)."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.outer(pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def spatial_pos_embed(cfg):
    """(S, D): half the width encodes the column, half the row (token order row-major)."""
    gh, gw = cfg.grid
    col, row = np.meshgrid(np.arange(gw, dtype=np.float32) / cfg.space_scale,
                           np.arange(gh, dtype=np.float32) / cfg.space_scale)
    D = cfg.hidden_size
    return np.concatenate([sincos_1d(D // 2, col), sincos_1d(D // 2, row)], axis=1)


def temporal_pos_embed(cfg):
    """(L, D) over the cyclic period."""
    return sincos_1d(cfg.hidden_size, np.arange(cfg.max_tpe_len) / cfg.time_scale)


# --------------------------------------------------------------------------------------------
# Size presets (the official registry's three; serving defaults from its video-prediction configs)
# --------------------------------------------------------------------------------------------

PRESETS = {
    "CausalSTDiT2-XL/2": dict(depth=28, hidden_size=1152, num_heads=16, patch=2),
    "CausalSTDiT2-Base": dict(depth=14, hidden_size=1152, num_heads=16, patch=2),
    "CausalSTDiT2-Tiny": dict(depth=2, hidden_size=1152, num_heads=16, patch=2),
    # For tests: every path of the big ones at a size a CPU runs in milliseconds.
    "test": dict(depth=2, hidden_size=64, num_heads=4, patch=2, latent_size=(8, 8), chunk=2, p_max=5, max_tpe_len=7),
}


def build(preset="CausalSTDiT2-XL/2", **overrides):
    return CausalSTDiT2(STDiT2Config(**{**PRESETS[preset], **overrides}))


def config_dict(cfg):
    d = asdict(cfg)
    d["latent_size"] = list(cfg.latent_size)
    return d
