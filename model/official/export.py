"""The official network's step graph in ONNX, and its manifest (format 2).

Graph inputs, in order: x (B, F, C, h, w) latents; t (B, F); clean (B, F), 1 in the cache-write
pass; pos (1,) int64, global index of x's first frame; y (B, Ny, Cy) conditioning embedding (only
with cross-attention); cache_<i>_k / cache_<i>_v (B, S, H, P, hd) per layer, the temporal cache;
prefix_<i>_k / prefix_<i>_v (B, S, H, T_p, hd) per layer, the spatial prefix cache (only with
prefix enhancement); cache_pos (P,) int64, each cached frame's window position (only with rotary
positions). Outputs: out (B, F, 2C, h, w) (eps, then the variance value), kv and kv_prefix
(F, depth, 2, B, S, D) in fp16: the frames' temporal and spatial K/V, as segments store them.
"""
import hashlib
import os

import numpy as np
import torch


KV_DTYPE = "float16"
FORMAT = 2


def cache_input_names(cfg):
    return [f"cache_{i}_{kv}" for i in range(cfg.depth) for kv in ("k", "v")]


def prefix_input_names(cfg):
    return [f"prefix_{i}_{kv}" for i in range(cfg.depth) for kv in ("k", "v")] if cfg.prefix_frames else []


def input_names(cfg):
    names = ["x", "t", "clean", "pos"] + (["y"] if cfg.caption_channels else [])
    names += cache_input_names(cfg) + prefix_input_names(cfg)
    return names + (["cache_pos"] if cfg.relative_tpe_mode == "rope" else [])


def output_names(cfg):
    return ["out", "kv"] + (["kv_prefix"] if cfg.prefix_frames else [])


class StepGraph(torch.nn.Module):
    """The exported function: CausalSTDiT2.step with the caches as flat per-layer inputs; K/V cast to fp16."""
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        cfg = self.model.cfg
        named = dict(zip(input_names(cfg), inputs))
        cache = [(named[f"cache_{i}_k"], named[f"cache_{i}_v"]) for i in range(cfg.depth)]
        prefix = [(named[f"prefix_{i}_k"], named[f"prefix_{i}_v"]) for i in range(cfg.depth)] if cfg.prefix_frames else None
        out, kv, kvp = self.model.step(named["x"], named["t"], named["clean"], named["pos"], named.get("y"),
                                       cache, prefix, named.get("cache_pos"))
        dt = getattr(torch, KV_DTYPE)
        return (out, kv.to(dt)) + ((kvp.to(dt),) if kvp is not None else ())


def example_inputs(cfg, batch=1, frames=None, cached=3, clean=0.0, pos=None, seed=0):
    """A dict of graph inputs (random latents, cache and conditioning) for export and tests."""
    frames = frames or cfg.chunk
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.latent_size
    S, H, hd = cfg.tokens, cfg.num_heads, cfg.head_dim
    d = {"x": torch.randn(batch, frames, cfg.in_channels, h, w, generator=g),
         "t": torch.full((batch, frames), 0.0 if clean else 500.0),
         "clean": torch.full((batch, frames), float(clean)),
         "pos": torch.tensor([cached if pos is None else pos])}
    if cfg.caption_channels:
        d["y"] = torch.randn(batch, cfg.model_max_length, cfg.caption_channels, generator=g)
    for name in cache_input_names(cfg):
        d[name] = torch.randn(batch, S, H, cached, hd, generator=g)
    for name in prefix_input_names(cfg):
        d[name] = torch.randn(batch, S, H, cfg.prefix_frames, hd, generator=g)
    if cfg.relative_tpe_mode == "rope":
        d["cache_pos"] = torch.randperm(cached, generator=g)   # ring order: any permutation of 0..P-1
    return d


def export(model, path, opset=17):
    cfg = model.cfg
    inputs = example_inputs(cfg)
    names = input_names(cfg)
    dyn = {"x": {0: "B", 1: "F"}, "t": {0: "B", 1: "F"}, "clean": {0: "B", 1: "F"},
           **{n: {0: "B", 3: "P"} for n in cache_input_names(cfg)}, **{n: {0: "B"} for n in prefix_input_names(cfg)},
           "out": {0: "B", 1: "F"}, "kv": {0: "F", 3: "B"}, "kv_prefix": {0: "F", 3: "B"}}
    if cfg.caption_channels:
        dyn["y"] = {0: "B"}
    if cfg.relative_tpe_mode == "rope":
        dyn["cache_pos"] = {0: "P"}
    # Over protobuf's 2 GB (XL/2 is 3 GB in fp32) torch writes each weight to its own file beside the
    # graph, and constant folding would hold further copies of every weight (over 16 GB of RAM for
    # XL/2 with torch 1.13): big graphs are exported unfolded (onnxruntime folds them when it loads).
    big = sum(p.numel() for p in model.parameters()) * 4 > BIG_BYTES
    torch.onnx.export(StepGraph(model).eval(), tuple(inputs[n] for n in names), path, input_names=names,
                      output_names=output_names(cfg), opset_version=opset, do_constant_folding=not big,
                      dynamic_axes={k: v for k, v in dyn.items() if k in names or k in output_names(cfg)})


BIG_BYTES = 1.8e9


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def linear_alphas_cumprod(n=1000):
    """The official IDDPM 'linear' schedule: betas linspace(1e-4, 0.02) scaled to n steps."""
    scale = 1000 / n
    betas = np.linspace(scale * 0.0001, scale * 0.02, n, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def manifest(cfg, name, files, frame_size, context_t=50, steps=100, vae_scale=0.18215, training=None):
    """The contract with the pipeline. files: {'step': path, 'decoder': path, 'encoder': path, 'null_y': path?}."""
    step = files["step"]
    io_in = {"x": "x", "t": "t", "clean": "clean", "pos": "pos", "cache": cache_input_names(cfg)}
    io_out = {"prediction": "out", "kv": "kv"}
    if cfg.caption_channels:
        io_in["y"] = "y"
    if cfg.prefix_frames:
        io_in["prefix"] = prefix_input_names(cfg)
        io_out["kv_prefix"] = "kv_prefix"
    if cfg.relative_tpe_mode == "rope":
        io_in["cache_pos"] = "cache_pos"
    h, w = cfg.latent_size
    m = {
        "name": name,
        "format": FORMAT,
        "onnx": os.path.basename(step),
        "onnx_sha256": sha256(step),
        "frame": {"channels": 3, "height": frame_size[0], "width": frame_size[1], "range": [-1, 1]},
        # The step works on VAE latents: starting frames are encoded once, every chunk decoded.
        "latent": {"channels": cfg.in_channels, "height": h, "width": w, "scale": vae_scale,
                   "encoder": os.path.basename(files["encoder"]), "encoder_sha256": sha256(files["encoder"]),
                   "decoder": os.path.basename(files["decoder"]), "decoder_sha256": sha256(files["decoder"])},
        "chunk_frames": cfg.chunk,
        "trained_chunk_frames": cfg.chunk,
        "p_max": cfg.p_max,
        "l_train": cfg.max_tpe_len,
        "depth": cfg.depth,
        "heads": cfg.num_heads,
        "head_dim": cfg.head_dim,
        "width": cfg.hidden_size,
        "tokens_per_frame": cfg.tokens,
        "kv_dtype": KV_DTYPE,
        "kv_layout": ["frames", "depth", "kv", "batch", "tokens", "width"],
        "cache_layout": ["depth", "kv", "batch", "tokens", "heads", "frames", "head_dim"],
        # Temporal positions: 'cyclic' keys carry their position; 'rope' keys are cached un-rotated and
        # the graph turns them by io.inputs.cache_pos (each cached frame's place in the window, 0 = oldest).
        "positions": cfg.relative_tpe_mode,
        # Spatial prefix cache: the spatial K/V of `frames` frames of the last written chunk (its last
        # ones; a shorter chunk's frames each repeated in order), replaced at every cache write.
        "prefix_cache": {"frames": cfg.prefix_frames} if cfg.prefix_frames else None,
        "schedule": {"type": "linear", "train_timesteps": 1000,
                     "alphas_cumprod": [float(a) for a in linear_alphas_cumprod()]},   # float64: the tables are built from these
        "prediction": "eps",
        # IDDPM learned range: out's second half v interpolates log beta_t and the clipped posterior variance.
        "variance": "learned_range" if cfg.pred_sigma else "fixed",
        "sampler": "iddpm",
        "default_steps": steps,
        "labels": [],
        "guidance": {"supported": False, "default": 1.0},
        # The official inference noises each conditioning chunk at this timestep before the cache
        # write, and embeds it at context_embed_t (0: the write pass always says clean).
        "context_t": context_t,
        "context_embed_t": 0,
        "io": {"inputs": io_in, "outputs": io_out},
    }
    if m["prefix_cache"] is None:
        del m["prefix_cache"]
    if cfg.caption_channels:
        # No prompts yet: every call conditions on the learned null embedding, stored beside the graph.
        m["conditioning"] = {"tokens": cfg.model_max_length, "channels": cfg.caption_channels,
                             "null": os.path.basename(files["null_y"]), "null_sha256": sha256(files["null_y"])}
    if training:
        m["training"] = training
    return m
