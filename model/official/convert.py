"""Convert an official Ca2-VDM checkpoint (causal STDiT2) into a served model folder, in one command.

    cd model && /usr/bin/python3 -m official.convert --checkpoint ema.pt \\
        --config train_SkyTimelapse_demo.py --infer-config infer_SkyTimelapse_withKVcache.py \\
        --vae-encoder sd_vae_encoder.onnx --vae-decoder sd_vae_decoder.onnx --name sky-ca2vdm
    cd model && /usr/bin/python3 -m official.convert --random --preset CausalSTDiT2-XL/2 --name xl2-random

It writes model/artifacts/<name>/: step.onnx (over 2 GB, its weights in files beside it), encoder.onnx,
decoder.onnx, null_y.bin with cross-attention, manifest.json (format 2). The checkpoint must hold
exactly the official state_dict of the configured size: a key missing, unexpected, or of another
shape is an error naming it, never a partial load. --random builds any preset with random weights
(and a tiny random VAE unless VAE graphs are given): for tests and timing, not for pictures.
"""
import argparse
import ast
import json
import os
import shutil
import sys

import torch

from . import export, stdit2, vae

ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "artifacts")


class ConvertError(ValueError):
    """A checkpoint or config this converter cannot turn into a served model (the message names the key)."""


# --------------------------------------------------------------------------------------------
# Config: the official model dict (+ inference settings) -> STDiT2Config
# --------------------------------------------------------------------------------------------

# Official model kwargs that change nothing at inference (training, kernels, loading).
IGNORED = {"type", "from_pretrained", "from_scratch", "freeze", "enable_flashattn", "enable_layernorm_kernel",
           "enable_sequence_parallelism", "class_dropout_prob", "drop_path", "no_temporal_pos_emb",
           "temporal_max_len", "t_win_size"}


def read_py_config(path):
    """Literal top-level assignments of an official mmcv-style config file (read, never executed)."""
    out = {}
    for node in ast.parse(open(path).read()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
            if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "dict":
                d = {}
                for kw in value.keywords:
                    try:
                        d[kw.arg] = ast.literal_eval(kw.value)
                    except ValueError:
                        pass                                # a path built from variables: not needed here
                out[name] = d
            else:
                try:
                    out[name] = ast.literal_eval(value)
                except ValueError:
                    pass
    return out


def read_config(path):
    if path is None:
        return {}
    return json.load(open(path)) if path.endswith(".json") else read_py_config(path)


def to_config(model_cfg, chunk, p_max, frame_size):
    """STDiT2Config from the official `model = dict(...)`; unservable settings are errors naming the key."""
    kind = model_cfg.get("type", "CausalSTDiT2-XL/2")
    if kind not in stdit2.PRESETS or kind == "test":
        raise ConvertError(f"model.type: '{kind}' is not a causal STDiT2 size this converter knows ({', '.join(k for k in stdit2.PRESETS if k != 'test')})")
    kw = dict(stdit2.PRESETS[kind])
    kw.update(chunk=chunk, p_max=p_max, latent_size=(frame_size[0] // 8, frame_size[1] // 8),
              caption_channels=4096, max_tpe_len=64, relative_tpe_mode=None, temp_extra_in_channels=0,
              spatial_attn_enhance=None, model_max_length=120)   # the official constructor's defaults
    m = dict(model_cfg)
    if m.get("cross_frame_attn") is not None and m.get("spatial_attn_enhance") is None:
        m["spatial_attn_enhance"] = m["cross_frame_attn"].replace("prev_prefix_", "prev_frames_")
    m.pop("cross_frame_attn", None)
    if "temporal_max_len" in m and m["temporal_max_len"] is not None:
        m["max_tpe_len"] = m["temporal_max_len"]
    if m.get("is_causal", True) is not True:
        raise ConvertError(f"model.is_causal: {m['is_causal']!r}: only causal temporal attention can share a cache")
    ps = tuple(m.get("patch_size", (1, kw["patch"], kw["patch"])))
    if ps[0] != 1 or ps[1] != ps[2]:
        raise ConvertError(f"model.patch_size: {ps}: the step serves temporal patch 1 and square spatial patches")
    kw["patch"] = ps[1]
    if "input_size" in m and m["input_size"] is not None:
        kw["latent_size"] = tuple(m["input_size"][1:])
    for key in ("in_channels", "hidden_size", "depth", "num_heads", "mlp_ratio", "pred_sigma", "caption_channels",
                "model_max_length", "max_tpe_len", "relative_tpe_mode", "temp_extra_in_channels",
                "temp_extra_in_all_block", "spatial_attn_enhance", "space_scale", "time_scale"):
        if key in m:
            kw[key] = m[key]
    unknown = set(m) - set(kw) - IGNORED - {"patch_size", "input_size", "is_causal"}
    if unknown:
        raise ConvertError(f"model.{sorted(unknown)[0]}: an official setting this converter does not know how to serve")
    if kw["relative_tpe_mode"] not in ("cyclic", "rope"):
        raise ConvertError(f"model.relative_tpe_mode: {kw['relative_tpe_mode']!r}: a long video needs 'cyclic' or 'rope' "
                           "temporal positions (fixed ones end at max_tpe_len frames)")
    sae = kw["spatial_attn_enhance"]
    if sae is not None and not str(sae).startswith("prev_frames_"):
        raise ConvertError(f"model.spatial_attn_enhance: {sae!r}: only 'prev_frames_<k>' is served")
    cfg = stdit2.STDiT2Config(**kw)
    if cfg.hidden_size % cfg.num_heads:
        raise ConvertError(f"model.num_heads: {cfg.num_heads} does not divide hidden_size {cfg.hidden_size}")
    if cfg.p_max + cfg.chunk > cfg.max_tpe_len:
        raise ConvertError(f"model.max_tpe_len: {cfg.max_tpe_len} < p_max + chunk = {cfg.p_max + cfg.chunk}: "
                           "positions in one window would repeat")
    return cfg


# --------------------------------------------------------------------------------------------
# Checkpoint: exactly the official state_dict, or an error naming the key
# --------------------------------------------------------------------------------------------

def read_state_dict(path):
    state = torch.load(path, map_location="cpu")
    for wrapper in ("ema", "model", "state_dict", "module"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConvertError(f"{path}: not a state_dict (a dict of tensors)")
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def load_weights(model, state):
    want = model.state_dict()
    if not any(k.startswith("blocks.0.attn_temp.") for k in state):
        some = sorted(state)[:3]
        raise ConvertError(f"not a causal STDiT2 checkpoint: no key 'blocks.0.attn_temp.qkv.weight' (it has {some} ...)")
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    if missing:
        raise ConvertError(f"missing key '{missing[0]}' ({len(missing)} missing): the config and checkpoint "
                           "disagree (another size, or a setting such as spatial_attn_enhance / caption_channels)")
    if unexpected:
        raise ConvertError(f"unexpected key '{unexpected[0]}' ({len(unexpected)} unexpected): the checkpoint has "
                           "parts the configured model does not")
    for k, v in want.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ConvertError(f"key '{k}' has shape {tuple(state[k].shape)}, the configured model needs {tuple(v.shape)}")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model


# --------------------------------------------------------------------------------------------
# Writing the folder
# --------------------------------------------------------------------------------------------

def write_folder(model, out, name, frame_size, encoder=None, decoder=None, context_t=50, steps=100,
                 training=None, skip_step_export=False):
    """step.onnx, the VAE graphs (given ones copied after a check, else a tiny random one), null_y.bin,
    manifest.json. Returns the manifest."""
    cfg = model.cfg
    os.makedirs(out, exist_ok=True)
    files = {"step": os.path.join(out, "step.onnx"), "encoder": os.path.join(out, "encoder.onnx"),
             "decoder": os.path.join(out, "decoder.onnx")}
    if not skip_step_export:
        export.export(model, files["step"])
    h, w = cfg.latent_size
    if encoder or decoder:
        if not (encoder and decoder):
            raise ConvertError("--vae-encoder and --vae-decoder go together")
        vae.check_graph(encoder, vae.ENCODER_IO, (3, *frame_size), (cfg.in_channels, h, w))
        vae.check_graph(decoder, vae.DECODER_IO, (cfg.in_channels, h, w), (3, *frame_size))
        shutil.copyfile(encoder, files["encoder"])
        shutil.copyfile(decoder, files["decoder"])
    else:
        torch.manual_seed(0)
        vae.export_tiny(vae.TinyVAE(cfg.in_channels), frame_size, files["encoder"], files["decoder"])
    if cfg.caption_channels:
        files["null_y"] = os.path.join(out, "null_y.bin")
        model.y_embedder.y_embedding.detach().float().numpy().astype("<f4").tofile(files["null_y"])
    m = export.manifest(cfg, name, files, frame_size, context_t=context_t, steps=steps, training=training)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(m, f, indent=1)
    return m


def window_bytes(cfg, rows=1, dtype_bytes=2):
    """Bytes of one frame's K/V, one chunk's segment payload, and a full window (both caches)."""
    frame = cfg.depth * 2 * rows * cfg.tokens * cfg.hidden_size * dtype_bytes
    return {"frame": frame, "segment_temporal": frame * cfg.chunk,
            "segment_prefix": frame * min(cfg.prefix_frames, cfg.chunk) if cfg.prefix_frames else 0,
            "window_temporal": frame * cfg.p_max, "window_prefix": frame * cfg.prefix_frames}


def main(args):
    # Setup: the config, from the official config files or a preset
    frame_size = tuple(int(v) for v in args.frame.split("x"))
    if args.random:
        cfg = stdit2.STDiT2Config(**{**stdit2.PRESETS[args.preset], **({"depth": args.depth} if args.depth else {}),
                                     "chunk": args.chunk or stdit2.PRESETS[args.preset].get("chunk", 8),
                                     "p_max": args.p_max or stdit2.PRESETS[args.preset].get("p_max", 25),
                                     "latent_size": stdit2.PRESETS[args.preset].get("latent_size", (frame_size[0] // 8, frame_size[1] // 8))})
        frame_size = (cfg.latent_size[0] * 8, cfg.latent_size[1] * 8)
        torch.manual_seed(args.seed)
        model = stdit2.CausalSTDiT2(cfg)
        with torch.no_grad():                               # random, and no branch left at its zero init
            for p in model.parameters():
                p.add_(0.02 * torch.randn_like(p))
        training = {"weights": "random", "preset": args.preset, "seed": args.seed}
        context_t = args.context_t if args.context_t is not None else 50
    else:
        if not args.checkpoint or not args.config:
            raise SystemExit("give --checkpoint and --config (the official training config), or --random")
        train, infer = read_config(args.config), read_config(args.infer_config)
        if "model" not in train:
            raise ConvertError(f"{args.config}: no `model = dict(...)`")
        chunk = args.chunk or train.get("ar_size") or infer.get("sample_cfgs", {}).get("auto_regre_chunk_len") or 8
        p_max = args.p_max or infer.get("kv_cache_max_seqlen") or infer.get("max_condion_frames") or 25
        cfg = to_config(train["model"], chunk, p_max, frame_size)
        model = load_weights(stdit2.CausalSTDiT2(cfg), read_state_dict(args.checkpoint))
        context_t = args.context_t if args.context_t is not None else max(0, int(infer.get("prefix_perturb_t", 0)))
        training = {"checkpoint": os.path.basename(args.checkpoint), "config": os.path.basename(args.config),
                    "model": train["model"].get("type")}
    model.eval()
    # Export and describe
    out = args.out or os.path.join(ARTIFACTS, args.name)
    m = write_folder(model, out, args.name, frame_size, args.vae_encoder, args.vae_decoder, context_t,
                     args.steps, training, skip_step_export=args.manifest_only)
    sizes = window_bytes(cfg)
    print(json.dumps({"out": out, "params": sum(p.numel() for p in model.parameters()),
                      "step_onnx_bytes": os.path.getsize(os.path.join(out, "step.onnx")), **sizes}))
    return m


def parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="official state_dict (.pt: model_ckpt.pt, ema.pt)")
    p.add_argument("--config", help="the official training config (.py, read not run) or a JSON with a 'model' dict")
    p.add_argument("--infer-config", help="the official inference config: kv_cache_max_seqlen, prefix_perturb_t")
    p.add_argument("--random", action="store_true", help="random weights at --preset (no checkpoint)")
    p.add_argument("--preset", default="CausalSTDiT2-XL/2", choices=sorted(stdit2.PRESETS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--depth", type=int, help="--random only: another depth at the preset's width (timing by depth)")
    p.add_argument("--name", required=True)
    p.add_argument("--out", help="folder (default model/artifacts/<name>)")
    p.add_argument("--frame", default="256x256", help="frame H x W (latents are 1/8)")
    p.add_argument("--chunk", type=int, help="frames per chunk (default: the config's ar_size, else 8)")
    p.add_argument("--p-max", type=int, help="cached frames (default: the inference config's, else 25)")
    p.add_argument("--context-t", type=int, help="noise level of conditioning latents (default: prefix_perturb_t)")
    p.add_argument("--steps", type=int, default=100, help="default sampling steps")
    p.add_argument("--vae-encoder", help="encoder.onnx with the SD-VAE interface (default: a tiny random one)")
    p.add_argument("--vae-decoder", help="decoder.onnx with the SD-VAE interface")
    p.add_argument("--manifest-only", action="store_true", help="keep the step.onnx already there; rewrite the rest")
    return p


if __name__ == "__main__":
    try:
        main(parser().parse_args())
    except ConvertError as e:
        sys.exit(f"convert: {e}")
