"""Evaluate a checkpoint: continuation quality against the truth and two baselines, plus a PNG grid.

    /usr/bin/python3 eval.py --ckpt checkpoints/ema_fp16.pt --out artifacts/balls32-v1

On held-out seeds, 4 true frames are given and 16 more are generated, in chunks of the serving
length (`chunk_frames` of the manifest in --out, else the trained chunk). Metrics are reported per
"chunk" of the trained length (4 frames; numbered from 1) whatever the serving length, so that runs
with different serving lengths compare frame for frame:
PSNR/SSIM against the true continuation, the same for "repeat the last given frame" and an
all-black frame, and an object metric (balls found by colour: count correct, centre error).
"""
import argparse
import json
import math
import os
import struct
import time
import zlib

import torch
import torch.nn.functional as F_

import data
import diffusion
from export_onnx import load_checkpoint

HELD_OUT_SEED = 1_000_000   # training draws from torch's RNG; these seeds never feed training


def psnr(a, b):
    """PSNR in dB of frames in [-1, 1] (peak-to-peak 2)."""
    mse = ((a - b) ** 2).mean().item()
    return 10 * math.log10(4.0 / max(mse, 1e-10))


def ssim(a, b):
    """Mean SSIM of frames (F, C, H, W) in [-1, 1], Gaussian window 11 / sigma 1.5, on [0, 1]."""
    a, b = (a + 1) / 2, (b + 1) / 2
    g = torch.exp(-(torch.arange(11) - 5.0) ** 2 / (2 * 1.5 ** 2))
    w = (g[:, None] * g[None]) / g.sum() ** 2
    C = a.shape[1]
    w = w.expand(C, 1, 11, 11)
    blur = lambda z: F_.conv2d(z, w, padding=5, groups=C)
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.mean().item()


def objects(gen, true):
    """Per frame: is the ball count right, and the centre errors of balls found in both."""
    correct, errors = [], []
    for g, t in zip(gen, true):
        fg, ft = data.find_balls(g), data.find_balls(t)
        correct.append(len(fg) == len(ft))
        errors += [math.dist(fg[c], ft[c]) for c in ft if c in fg]
    return correct, errors


def write_png(path, img):
    """img: (H, W, 3) uint8 tensor -> PNG file (no imaging library needed)."""
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + bytes(img[y].flatten().tolist()) for y in range(h))
    chunk = lambda tag, body: struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def grid(rows, scale=2, gap=2):
    """rows: list of (F, 3, H, W) in [-1, 1] -> (H', W', 3) uint8 image, one video per row."""
    F = max(r.shape[0] for r in rows)
    H, W = rows[0].shape[2:]
    out = torch.full((len(rows) * (H + gap), F * (W + gap), 3), 40, dtype=torch.uint8)
    for i, r in enumerate(rows):
        for j, fr in enumerate(r):
            px = ((fr.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0)
            out[i * (H + gap):i * (H + gap) + H, j * (W + gap):j * (W + gap) + W] = px
    return out.repeat_interleave(scale, 0).repeat_interleave(scale, 1)


def manifest_chunk(artifact_dir):
    """The serving chunk length of the artifact being evaluated, if it has a manifest."""
    path = os.path.join(artifact_dir, "manifest.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["chunk_frames"]


def main(args):
    # Setup
    torch.set_num_threads(os.cpu_count())
    model, state = load_checkpoint(args.ckpt)
    cfg = model.cfg
    context_t = diffusion.default_context_t(cfg) if args.context_t is None else args.context_t
    given, chunks = args.given, args.chunks
    # Checked by generate_batch (1..the trained chunk) before any frame is made
    serve_chunk = next(c for c in (args.serve_chunk, manifest_chunk(args.out), cfg.chunk) if c is not None)
    n_new = chunks * cfg.chunk
    per_chunk = [dict(psnr=[], psnr_repeat_last=[], psnr_black=[], ssim=[], ssim_repeat_last=[],
                      count=[], center=[]) for _ in range(chunks)]
    rows, start = [], time.time()

    # Continuations of held-out videos, generated in batches (one model call serves many videos)
    first = HELD_OUT_SEED + args.seed_offset
    videos = [data.make_video(first + i, given + n_new, cfg.frame_size) for i in range(args.seeds)]
    generated = []
    for b in range(0, args.seeds, args.batch):
        part = videos[b:b + args.batch]
        generated += list(diffusion.generate_batch(
            model, n_new, [lab for _, lab in part], init=torch.stack([v[:given] for v, _ in part]),
            steps=args.steps, guidance=args.guidance, seed=b, context_t=context_t, chunk=serve_chunk))
        print(f"generated {len(generated)}/{args.seeds} in {time.time() - start:.0f} s", flush=True)
    for i, ((video, label), gen) in enumerate(zip(videos, generated)):
        for k in range(chunks):
            sl = slice(given + k * cfg.chunk, given + (k + 1) * cfg.chunk)
            true, g = video[sl], gen[k * cfg.chunk:(k + 1) * cfg.chunk]
            last = video[given - 1].expand_as(true)
            m = per_chunk[k]
            m["psnr"].append(psnr(g, true))
            m["psnr_repeat_last"].append(psnr(last, true))
            m["psnr_black"].append(psnr(-torch.ones_like(true), true))
            m["ssim"].append(ssim(g, true))
            m["ssim_repeat_last"].append(ssim(last, true))
            correct, errors = objects(g, true)
            m["count"] += correct
            m["center"] += errors
        if i < 6:
            rows += [video, torch.cat([video[:given], gen])]

    # Unconditional samples per label
    uncond = list(diffusion.generate_batch(model, n_new, list(range(cfg.num_labels)), steps=args.steps,
                                           guidance=args.guidance, seed=100, context_t=context_t,
                                           chunk=serve_chunk))
    mean = lambda v: round(sum(v) / max(len(v), 1), 4)
    result = {
        "seeds": args.seeds, "first_seed": first, "steps": args.steps, "guidance": args.guidance, "context_t": context_t,
        "given_frames": given,
        "chunk_frames": cfg.chunk, "serve_chunk_frames": serve_chunk, "training_steps": state.get("step"),
        "chunks": [{"chunk": k + 1, **{key: mean(v) for key, v in m.items() if key not in ("count", "center")},
                    "count_accuracy": mean(m["count"]), "center_error_px": mean(m["center"])}
                   for k, m in enumerate(per_chunk)],
        "count_accuracy_all": mean([c for m in per_chunk for c in m["count"]]),
        "unconditional_count_accuracy": mean([len(data.find_balls(f)) == lab + 1
                                              for lab, v in enumerate(uncond) for f in v]),
        "seconds": round(time.time() - start, 1),
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "eval.json"), "w") as f:
        json.dump(result, f, indent=1)
    write_png(os.path.join(args.out, "eval_grid.png"), grid(rows + uncond))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ckpt", default="checkpoints/ema_fp16.pt")
    p.add_argument("--out", default="artifacts/balls32-v1")
    p.add_argument("--seeds", type=int, default=32)
    p.add_argument("--chunks", type=int, default=4)
    p.add_argument("--given", type=int, default=4, help="true frames given before the first generated chunk")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--serve-chunk", type=int, default=None,
                   help="frames generated per chunk, 1..trained chunk (default: the manifest's chunk_frames in --out)")
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--context-t", type=int, default=None,
                   help="noise level of conditioning frames (default: the middle of the model's trained range)")
    p.add_argument("--batch", type=int, default=16, help="videos generated together")
    p.add_argument("--seed-offset", type=int, default=0,
                   help="start of the held-out seeds; tune sampler settings on another range (e.g. 10000), report on 0")
    main(p.parse_args())
