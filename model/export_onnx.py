"""Export the step graph to ONNX with the K/V cache as explicit input/output, plus manifest.json.

    /usr/bin/python3 export_onnx.py --ckpt checkpoints/ema_fp16.pt --out artifacts/balls32-v1

The manifest is the whole contract with the serving pipeline: it reads nothing else about the model.
"""
import argparse
import hashlib
import json
import os

import torch

import ca2vdm
import data
import diffusion

OUTPUTS = ["out", "kv"]


def cache_input_names(cfg):
    """One graph input per layer and K/V, (B, N, H, P, hd) each, in the order of the cache layout's
    two outer axes: the worker feeds views into one assembled buffer, and no layer copies its slice."""
    return [f"cache_{i}_{kv}" for i in range(cfg.depth) for kv in ("k", "v")]


def input_names(cfg):
    return ["x", "t", "label", "pos"] + cache_input_names(cfg)


KV_DTYPE = "float16"   # `kv` leaves the graph in the dtype segments store (manifest kv_dtype)


class StepGraph(torch.nn.Module):
    """The exported function: Ca2VDM.step (cached or not, denoising or cache-write pass). `kv` is
    cast to KV_DTYPE (fp16) inside the graph: half the bytes to copy out of the runtime (or off the GPU), and
    the worker stores it as it comes, with no per-value conversion."""
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, t, label, pos, *cache):           # cache: K0, V0, K1, V1, ...
        out, kv = self.model.step(x, t, label, pos, list(zip(cache[0::2], cache[1::2])))
        return out, kv.to(getattr(torch, KV_DTYPE))


def split_cache(cache):
    """(depth, 2, B, N, H, P, hd) -> the graph's cache inputs, K0, V0, K1, V1, ..."""
    return [cache[i, j] for i in range(cache.shape[0]) for j in range(2)]


def load_checkpoint(path):
    """Rebuild the model from a checkpoint alone (config travels with the weights)."""
    state = torch.load(path, map_location="cpu")
    model = ca2vdm.Ca2VDM(ca2vdm.Ca2Config(**state["config"]))
    weights = state.get("ema") or state.get("weights")
    model.load_state_dict({k: v.float() for k, v in weights.items()})
    return model.eval(), state


def example_inputs(cfg, batch=2, frames=None, cached=3):
    frames = frames or cfg.chunk
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, frames, cfg.channels, cfg.frame_size, cfg.frame_size, generator=g)
    t = torch.full((batch, frames), 500.0)
    label = torch.tensor([0, cfg.num_labels][:batch] + [0] * max(0, batch - 2))
    pos = torch.tensor([cached])
    cache = torch.randn(cfg.depth, 2, batch, cfg.tokens, cfg.heads, cached, cfg.head_dim, generator=g)
    return x, t, label, pos, cache


def export(model, path, opset=17):
    x, t, label, pos, cache = example_inputs(model.cfg)
    caches = cache_input_names(model.cfg)
    torch.onnx.export(
        StepGraph(model), (x, t, label, pos, *split_cache(cache)), path,
        input_names=input_names(model.cfg), output_names=OUTPUTS, opset_version=opset, do_constant_folding=True,
        dynamic_axes={"x": {0: "B", 1: "F"}, "t": {0: "B", 1: "F"}, "label": {0: "B"},
                      **{name: {0: "B", 3: "P"} for name in caches},
                      "out": {0: "B", 1: "F"}, "kv": {0: "F", 3: "B"}})


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest(cfg, name, onnx_file, state, context_t=None, serve_chunk=None):
    context_t = diffusion.default_context_t(cfg) if context_t is None else context_t
    serve_chunk = cfg.chunk if serve_chunk is None else serve_chunk
    if not 1 <= serve_chunk <= cfg.chunk:
        raise ValueError(f"serve_chunk must be 1..{cfg.chunk} (the trained chunk), got {serve_chunk}")
    return {
        "name": name,
        "format": 1,
        "onnx": os.path.basename(onnx_file),
        "onnx_sha256": sha256(onnx_file),
        "frame": {"channels": cfg.channels, "height": cfg.frame_size, "width": cfg.frame_size, "range": [-1, 1]},
        # Frames per chunk served. Temporal attention is causal, so a chunk of l <= the trained chunk
        # is exactly the first l frames of a trained one.
        "chunk_frames": serve_chunk,
        "trained_chunk_frames": cfg.chunk,
        "p_max": cfg.p_max,
        "l_train": cfg.l_train,
        "depth": cfg.depth,
        "heads": cfg.heads,
        "head_dim": cfg.head_dim,
        "width": cfg.width,
        "tokens_per_frame": cfg.tokens,
        "kv_dtype": KV_DTYPE,
        "kv_layout": ["frames", "depth", "kv", "batch", "tokens", "width"],
        "cache_layout": ["depth", "kv", "batch", "tokens", "heads", "frames", "head_dim"],
        "schedule": {"type": "cosine", "train_timesteps": diffusion.TRAIN_STEPS,
                     "alphas_cumprod": [round(float(a), 8) for a in diffusion.cosine_alphas_cumprod()]},
        "prediction": "v",
        "default_steps": 25,
        "labels": data.LABELS,
        "null_label": cfg.num_labels,
        "guidance": {"supported": True, "default": 2.0},
        # The cache-write pass sees each conditioning frame noised at this timestep, and embeds it at it
        # (0: clean frames at t = 0). Models trained with context noise serve with some.
        "context_t": context_t,
        "io": {"inputs": {"x": "x", "t": "t", "label": "label", "pos": "pos", "cache": cache_input_names(cfg)},
               "outputs": {"prediction": "out", "kv": "kv"}},
        "training": {"steps": state.get("step"), "seconds": round(state.get("elapsed", 0.0), 1),
                     "context_noise": cfg.context_noise,
                     "data": "procedural bouncing balls (model/data.py)"},
    }


def main(args):
    # Setup: model from the checkpoint
    if args.manifest_only and not args.ckpt:
        raise SystemExit("--manifest-only describes the graph of a checkpoint: give --ckpt")
    model, state = load_checkpoint(args.ckpt) if args.ckpt else (ca2vdm.build(args.preset).eval(), {})
    os.makedirs(args.out, exist_ok=True)
    onnx_file = os.path.join(args.out, "step.onnx")
    # Export and describe (--manifest-only: describe the graph already there, its bytes unchanged)
    if not args.manifest_only:
        export(model, onnx_file)
    import onnx
    onnx.checker.check_model(onnx.load(onnx_file))
    name = args.name or os.path.basename(os.path.normpath(args.out))
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest(model.cfg, name, onnx_file, state, args.context_t, args.serve_chunk), f, indent=1)
    print(f"{'kept' if args.manifest_only else 'wrote'} {onnx_file} ({os.path.getsize(onnx_file) / 1e6:.1f} MB), wrote manifest.json")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ckpt", default=None, help="checkpoint (ema_fp16.pt or ckpt.pt); none = random weights")
    p.add_argument("--preset", default="small", choices=sorted(ca2vdm.PRESETS))
    p.add_argument("--out", default="artifacts/balls32-v1")
    p.add_argument("--name", default=None)
    p.add_argument("--context-t", type=int, default=None,
                   help="noise level of conditioning frames when served (default: the middle of the trained range)")
    p.add_argument("--serve-chunk", type=int, default=None,
                   help="frames per served chunk, 1..trained chunk (default: the trained chunk)")
    p.add_argument("--manifest-only", action="store_true",
                   help="rewrite manifest.json for the step.onnx already in --out (serving settings), not the graph")
    main(p.parse_args())
