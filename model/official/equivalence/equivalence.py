"""Our converted CausalSTDiT2 (PyTorch and ONNX) against the official code, at a small size: every
call with random weights, and whole chunks sampled both ways with briefly trained weights
(train_tiny.py; random weights make sampling chaotic, recorded as informational).

    cd model/official/equivalence && OFFICIAL_SRC=<official checkout> [TRAINED_CACHE=<folder>] \
        /usr/bin/python3 equivalence.py <repo root> <out.json>
"""
import contextlib, copy, hashlib, json, os, sys, tempfile, time
import numpy as np
import torch
import stubs
stubs.install_sampling()
import train_tiny
import opensora.schedulers.iddpm.gaussian_diffusion as gd
from opensora.models.causal_stdit2.causal_stdit2 import CausalSTDiT2
from opensora.schedulers.iddpm import IDDPM
from opensora.utils.video_gen import autoregressive_sample_kv_cache

REPO = sys.argv[1]
sys.path[:0] = [os.path.join(REPO, "model"), os.path.join(REPO, "model", "tests")]
from official import convert, export, sampling, stdit2   # noqa: E402
from test_export import run_ort                          # noqa: E402

_init = gd.GaussianDiffusion.__init__
gd.GaussianDiffusion.__init__ = lambda self, **kw: _init(self, **{**kw, "device": "cpu"})   # no CUDA here

SIZE = dict(input_size=(12, 16, 16), in_channels=4, patch_size=(1, 2, 2), hidden_size=128, depth=3, num_heads=4)
CHUNK, P_MAX, STEPS, CONTEXT_T = 4, 8, 100, 50
TRAINING_STAGES = [(250, 2e-3, 0), (200, 1e-3, 1)]   # (steps, peak lr, seed), cosine lr each
TRAINING = {}
VARIANTS = {
    "cross-attention (null embedding)": dict(caption_channels=32, model_max_length=8, temp_extra_in_channels=1,
                                             max_tpe_len=12, relative_tpe_mode="cyclic", enable_flashattn=False),
    # the official SkyTimelapse video-prediction model, at a small size
    "cyclic+prefix": dict(caption_channels=0, temp_extra_in_channels=1, max_tpe_len=12, relative_tpe_mode="cyclic",
                          cross_frame_attn="prev_prefix_3", enable_flashattn=False),
    "rope+prefix": dict(caption_channels=0, temp_extra_in_channels=1, max_tpe_len=12, relative_tpe_mode="rope",
                        cross_frame_attn="prev_prefix_3", enable_flashattn=True),
}


def official_model(kw, seed=0):
    torch.manual_seed(seed)
    m = CausalSTDiT2(**SIZE, **kw)
    with torch.no_grad():                      # random weights; no branch left at its zero init
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def to_official(kv):                            # ours (F, depth, 2, B, S, D) -> official (depth, B, F, S, 2D)
    F, d, _, B, S, D = kv.shape
    return kv.permute(1, 3, 0, 4, 2, 5).reshape(d, B, F, S, 2 * D)


def from_official(c):                           # official (depth, B, F, S, 2D) -> ours (F, depth, 2, B, S, D)
    d, B, F, S, D2 = c.shape
    return c.reshape(d, B, F, S, 2, D2 // 2).permute(2, 0, 4, 1, 3, 5)


def diff(a, b):
    return float((torch.as_tensor(np.asarray(a, dtype=np.float32)) - b.float()).abs().max())


def diff64(a, b):
    return float((a.double() - b.double()).abs().max())


def graph_inputs(model, x, t, clean, pos, y, kv, kv_prefix):
    """A dict of graph inputs from caches in K/V layout (frames-first, time order)."""
    cfg = model.cfg
    d = {"x": x, "t": t, "clean": clean, "pos": torch.tensor([pos])}
    if cfg.caption_channels:
        d["y"] = y
    cache = model.cache_from_kv(kv)
    for i, (k, v) in enumerate(cache):
        d[f"cache_{i}_k"], d[f"cache_{i}_v"] = k.contiguous(), v.contiguous()
    if cfg.prefix_frames:
        pre = model.cache_from_kv(kv_prefix[stdit2.prefix_frame_indices(kv_prefix.shape[0], cfg.prefix_frames)]) \
            if kv_prefix is not None else model.empty_cache(x.shape[0], cfg.prefix_frames)
        for i, (k, v) in enumerate(pre):
            d[f"prefix_{i}_k"], d[f"prefix_{i}_v"] = k.contiguous(), v.contiguous()
    if cfg.relative_tpe_mode == "rope":
        d["cache_pos"] = torch.arange(kv.shape[0])
    return d


def ours(model, d):
    with torch.no_grad():
        out = model.step(d["x"], d["t"], d["clean"], d["pos"], d.get("y"),
                         [(d[f"cache_{i}_k"], d[f"cache_{i}_v"]) for i in range(model.cfg.depth)],
                         [(d[f"prefix_{i}_k"], d[f"prefix_{i}_v"]) for i in range(model.cfg.depth)] if model.cfg.prefix_frames else None,
                         d.get("cache_pos"))
    return dict(zip(["out", "kv", "kv_prefix"], out))


def onnx(path, d, tmp):
    return run_ort(path, d, tmp)


def run_variant(name, kw, work, cases, informational):
    off = official_model(kw)
    # Setup: the official state_dict and config through our converter, exactly as a user would
    ckpt = os.path.join(work, "model_ckpt.pt")
    torch.save(off.state_dict(), ckpt)
    model_cfg = {"type": "CausalSTDiT2-Tiny", **{k: v for k, v in SIZE.items() if k not in ("patch_size",)}, **kw}
    model_cfg["patch_size"] = list(SIZE["patch_size"])
    json.dump({"model": model_cfg, "ar_size": CHUNK}, open(os.path.join(work, "train.json"), "w"))
    json.dump({"kv_cache_max_seqlen": P_MAX, "prefix_perturb_t": CONTEXT_T}, open(os.path.join(work, "infer.json"), "w"))
    export.KV_DTYPE = "float32"                    # fp32 K/V out of the graph for this comparison
    args = convert.parser().parse_args(["--checkpoint", ckpt, "--config", os.path.join(work, "train.json"),
                                        "--infer-config", os.path.join(work, "infer.json"), "--name", "eq",
                                        "--frame", "128x128", "--out", os.path.join(work, "out")])
    convert.main(args)
    step = os.path.join(work, "out", "step.onnx")
    cfg = convert.to_config(model_cfg, CHUNK, P_MAX, (128, 128))
    model = convert.load_weights(stdit2.CausalSTDiT2(cfg), convert.read_state_dict(ckpt)).eval()
    tmp = __import__("pathlib").Path(work)
    g = torch.Generator().manual_seed(1)
    B = 2
    y_off = off.y_embedder.y_embedding[None, None].repeat(B, 1, 1, 1) if cfg.caption_channels else None  # the null embedding
    y = y_off[:, 0] if y_off is not None else None
    zeros_kv = torch.zeros(0, cfg.depth, 2, B, cfg.tokens, cfg.hidden_size)

    def record(case, want, d, key="out", to=lambda z: z):
        got_pt = to(ours(model, d)[key])
        got_ox = to(torch.from_numpy(np.array(onnx(step, d, tmp)[key])))
        cases.append({"name": f"{name}: {case} (ours, PyTorch)", "max_abs_diff": diff(got_pt, want)})
        cases.append({"name": f"{name}: {case} (ours, ONNX)", "max_abs_diff": diff(got_ox, want)})

    with torch.no_grad():
        # 1. One uncached forward: the official training-path forward over [1 clean frame, 4 noisy
        #    frames] (mask channel and per-frame timesteps as in training) against our step called as
        #    the served pipeline calls it: the cache-write pass of the clean frame, then the noisy chunk.
        x = torch.randn(B, 4, 1 + CHUNK, 16, 16, generator=g)
        ts = torch.cat([torch.zeros(B, 1), torch.full((B, CHUNK), 640.0)], 1)
        mask_channel = torch.zeros(B, 1, 1 + CHUNK, 1, 1); mask_channel[:, :, 0] = 1
        want = off.forward(x, ts, y_off, mask_channel=mask_channel, x_temporal_start=0)[:, :, 1:]   # (B, 2C, 4, h, w)
        xs = x.permute(0, 2, 1, 3, 4)
        d0 = graph_inputs(model, xs[:, :1], torch.zeros(B, 1), torch.ones(B, 1), 0, y, zeros_kv, None)
        w0 = ours(model, d0)
        d1 = graph_inputs(model, xs[:, 1:], torch.full((B, CHUNK), 640.0), torch.zeros(B, CHUNK), 1, y, w0["kv"], w0.get("kv_prefix"))
        o0 = onnx(step, d0, tmp)
        d1x = graph_inputs(model, xs[:, 1:], torch.full((B, CHUNK), 640.0), torch.zeros(B, CHUNK), 1, y,
                           torch.from_numpy(np.array(o0["kv"])), torch.from_numpy(np.array(o0["kv_prefix"])) if "kv_prefix" in o0 else None)
        got_pt = ours(model, d1)["out"].permute(0, 2, 1, 3, 4)
        got_ox = torch.from_numpy(np.array(onnx(step, d1x, tmp)["out"])).permute(0, 2, 1, 3, 4)
        cases.append({"name": f"{name}: uncached forward, 1 clean + 4 noisy frames (ours, PyTorch)", "max_abs_diff": diff(got_pt, want)})
        cases.append({"name": f"{name}: uncached forward, 1 clean + 4 noisy frames (ours, ONNX)", "max_abs_diff": diff(got_ox, want)})

        # 2. write_latents_to_cache of a first frame (empty cache): the K/V written, both caches.
        off.register_kv_cache(B, max_seq_len=P_MAX, kv_cache_dequeue=True)
        y_kw = {"y": y_off, "mask": None}
        x0 = torch.randn(B, 4, 1, 16, 16, generator=g)
        off.write_latents_to_cache(x0, **y_kw)
        d = graph_inputs(model, x0.permute(0, 2, 1, 3, 4), torch.zeros(B, 1), torch.ones(B, 1), 0, y, zeros_kv, None)
        record("write_latents_to_cache, first frame: temporal K/V", off.cache_kv[:, :, :1], d, "kv", to_official)
        if cfg.prefix_frames:
            record("write_latents_to_cache, first frame: spatial prefix K/V", off.spatial_ctx_kv, d, "kv_prefix",
                   lambda z: to_official(z[stdit2.prefix_frame_indices(1, cfg.prefix_frames)]))
        # 3. forward_kv_cache after write_latents_to_cache, chunk after chunk past the dequeue point.
        n = 1
        for c in range(3):
            P = min(n, P_MAX)
            kv = from_official(off.cache_kv[:, :, :P])
            kvp = from_official(off.spatial_ctx_kv) if cfg.prefix_frames else None
            xn = torch.randn(B, 4, CHUNK, 16, 16, generator=g)
            want = off.forward(xn, torch.full((B,), 640.0), **y_kw)
            # the prefix cache as the official keeps it is already expanded: feed its 3 frames as they are
            d = graph_inputs(model, xn.permute(0, 2, 1, 3, 4), torch.full((B, CHUNK), 640.0), torch.zeros(B, CHUNK), n, y, kv, kvp)
            record(f"forward_kv_cache, {P} cached frames (chunk {c})", want, d, "out", lambda z: z.permute(0, 2, 1, 3, 4))
            xc = torch.randn(B, 4, CHUNK, 16, 16, generator=g)
            off.write_latents_to_cache(xc, **y_kw)
            d = graph_inputs(model, xc.permute(0, 2, 1, 3, 4), torch.zeros(B, CHUNK), torch.ones(B, CHUNK), n, y, kv, kvp)
            P2 = min(n + CHUNK, P_MAX)
            record(f"write_latents_to_cache after {P} cached frames (chunk {c}): temporal K/V", off.cache_kv[:, :, P2 - CHUNK:P2], d, "kv", to_official)
            n += CHUNK
        off.empty_kv_cache()

    # 4. Whole chunks sampled both ways with the same noise: the official kv-cache sampler (IDDPM,
    #    100 steps, context noise 50, dequeue) against ours, 3 chunks after one given frame.
    if not cfg.caption_channels:
        sampling_cases(name, kw, off, cfg, work, cases, informational)


def sampling_cases(name, kw, off, cfg, work, cases, informational):
    """Case 4 with briefly trained weights (the cases), and with the random weights of cases 1-3
    (informational: sampling with them is chaotic, see EQUIVALENCE.md)."""
    g = torch.Generator().manual_seed(2)
    cond = train_tiny.blobs(1, 1, 4, 16, g)             # a first frame like the training clips

    # Random weights: x grows to ~1e3 and any last-bit difference grows with it.
    model = converted(off, kw, work)
    want = official_sample(off, cond)
    got = our_sample(OfficialAsStep(off, cfg), cond)
    off.empty_kv_cache()
    cases.append({"name": f"{name}, random weights: 3 chunks sampled, our sampler driving the official network",
                  "max_abs_diff": diff(got, want), "max_abs_value": float(want.abs().max())})
    got = our_sample(model, cond)
    info = {"name": f"{name}, random weights: 3 chunks end to end, our network and sampler (PyTorch)",
            "max_abs_diff": diff(got, want), "max_abs_value": float(want.abs().max()),
            "first_chunk_max_abs_diff": diff(got[:, :, 1:1 + CHUNK], want[:, :, 1:1 + CHUNK])}
    if kw["relative_tpe_mode"] != "rope":   # the official rotary helper runs only on its flash-attention path
        floor = official_sample(official_model({**kw, "enable_flashattn": not kw["enable_flashattn"]}), cond)
        info["official_against_itself"] = diff(floor, want)
        info["first_chunk_official_against_itself"] = diff(floor[:, :, 1:1 + CHUNK], want[:, :, 1:1 + CHUNK])
    informational.append(info)
    # The same in float64: both networks in double, driven by our sampler (the official sampler fixes
    # float32; the case above shows ours is the same arithmetic). One variant: it takes minutes.
    if kw["relative_tpe_mode"] != "rope":
        ref = our_sample(OfficialAsStep(copy.deepcopy(off).double(), cfg), cond.double())   # (its own copy)
        mine = our_sample(copy.deepcopy(model).double(), cond.double())
        informational.append({"name": f"{name}, random weights, float64: 3 chunks end to end, our network against "
                              "the official network, both driven by our sampler", "max_abs_diff": diff64(mine, ref),
                              "max_abs_value": float(ref.abs().max()),
                              "first_chunk_max_abs_diff": diff64(mine[:, :, 1:1 + CHUNK], ref[:, :, 1:1 + CHUNK])})

    trained_cases(name, kw, off, cfg, work, cond, cases)


def trained_cases(name, kw, off, cfg, work, cond, cases):
    """Case 4 with the trained weights: the same random init, then the official loss on synthetic clips."""
    trained = trained_official(name, kw, off, work)
    model = converted(trained, kw, work)
    want = official_sample(trained, cond)
    what = f"{name}, trained weights: 3 chunks of 4 sampled after 1 frame, IDDPM 100 steps, context t 50, cache dequeued"
    # a. our sampler driving the official network (the sampling arithmetic, noise order, context
    #    noise, cache writes and chunk loop, with no difference in the network's rounding)
    got = our_sample(OfficialAsStep(trained, cfg), cond)
    cases.append({"name": f"{what}: our sampler driving the official network", "max_abs_diff": diff(got, want),
                  "max_abs_value": float(want.abs().max())})
    # b. end to end: our network (through the converter) and our sampler, PyTorch
    got = our_sample(model, cond)
    cases.append({"name": f"{what}: end to end, our network and sampler (PyTorch)", "max_abs_diff": diff(got, want),
                  "max_abs_value": float(want.abs().max()),
                  "first_chunk_max_abs_diff": diff(got[:, :, 1:1 + CHUNK], want[:, :, 1:1 + CHUNK])})
def converted(off, kw, work):
    """Our PyTorch model from the official state_dict, through the converter's checkpoint reader."""
    ckpt = os.path.join(work, "sampling_ckpt.pt")
    torch.save(off.state_dict(), ckpt)
    model_cfg = {"type": "CausalSTDiT2-Tiny", **{k: v for k, v in SIZE.items() if k not in ("patch_size",)}, **kw}
    model_cfg["patch_size"] = list(SIZE["patch_size"])
    cfg = convert.to_config(model_cfg, CHUNK, P_MAX, (128, 128))
    return convert.load_weights(stdit2.CausalSTDiT2(cfg), convert.read_state_dict(ckpt)).eval()


def trained_official(name, kw, off, work):
    """A copy of `off` after the stages of TRAINING_STAGES (train_tiny.py: steps, peak lr, seed),
    each from the previous one's weights. $TRAINED_CACHE (a folder) keeps each stage's result
    between runs: training takes most of an hour on the 2-vCPU VM."""
    net = copy.deepcopy(off)
    cache = os.environ.get("TRAINED_CACHE")
    log, tag = [], name.replace("+", "_")
    for steps, lr, seed in TRAINING_STAGES:
        tag += f"_{steps}x{lr:g}s{seed}"
        path = os.path.join(cache, tag + ".pt") if cache else None
        deadline = time.time() + float(os.environ.get("TRAINED_CACHE_WAIT", 0))   # another process training it
        while path and not os.path.exists(path) and time.time() < deadline:
            time.sleep(10)
        if path and os.path.exists(path):
            net.load_state_dict(torch.load(path))
            log.append({"steps": steps, "lr": lr, "seed": seed, "from_cache": os.path.basename(path)})
            continue
        curve = train_tiny.train(net, steps, CHUNK, lr=lr, seed=seed, log=print)
        log.append({"steps": steps, "lr": lr, "seed": seed, "first_loss": curve[0],
                    "last_10_mean_loss": sum(curve[-10:]) / 10})
        if path:
            os.makedirs(cache, exist_ok=True)
            torch.save(net.state_dict(), path)
    sha = hashlib.sha256(b"".join(v.detach().contiguous().numpy().tobytes() for v in net.state_dict().values()))
    TRAINING[name] = {"stages": log, "state_dict_sha256": sha.hexdigest()}
    return net.eval()


def official_sample(off, cond):
    sch = IDDPM(num_sampling_steps=STEPS, cfg_scale=1.0)
    torch.manual_seed(7)
    with torch.no_grad():
        out, _, _ = autoregressive_sample_kv_cache(sch, off, None, (4, CHUNK, 16, 16), [None], cond, 3, True, P_MAX,
                                                   verbose=False, prefix_perturb_t=CONTEXT_T, seed=111)
    off.empty_kv_cache()
    return out


def our_sample(model, cond):
    gen = torch.Generator().manual_seed(111)        # the official draws the whole video's noise at once
    init_noise = torch.randn((1, 4, 1 + 3 * CHUNK, 16, 16), generator=gen)[:, :, 1:].permute(0, 2, 1, 3, 4)
    init_noise = init_noise.to(cond.dtype)          # float64 runs: the same noise, exactly
    torch.manual_seed(7)
    got = sampling.generate(model, cond.permute(0, 2, 1, 3, 4), 3, steps=STEPS, context_t=CONTEXT_T, init_noise=init_noise)
    return got.permute(0, 2, 1, 3, 4)


@contextlib.contextmanager
def float32_upcasts_keep_float64():
    """The official code casts attention scores, layer-norm inputs and its output `.to(torch.float32)`,
    an upcast meant for half precision. In a float64 run that would be a downcast; here it keeps
    float64 instead (the upcasts' intent), so that the official network runs in float64 throughout."""
    to = torch.Tensor.to

    def keep(self, *args, **kwargs):
        if self.dtype == torch.float64 and (args[:1] == (torch.float32,) or kwargs.get("dtype") == torch.float32):
            return self
        return to(self, *args, **kwargs)
    torch.Tensor.to = keep
    try:
        yield
    finally:
        torch.Tensor.to = to


class OfficialAsStep:
    """The official network behind our step interface: its own cache (write_latents_to_cache /
    forward_kv_cache) instead of the cache arguments, which our sampler still builds."""
    def __init__(self, off, cfg):
        self.off, self.cfg, self.shadow = off, cfg, stdit2.CausalSTDiT2(cfg)
        off.register_kv_cache(1, max_seq_len=P_MAX, kv_cache_dequeue=True)

    def cache_from_kv(self, kv):
        return self.shadow.cache_from_kv(kv)

    def empty_cache(self, batch, frames=0):
        return self.shadow.empty_cache(batch, frames)

    def step(self, x, t, clean, pos, y, cache, prefix, cache_pos):
        if x.dtype == torch.float64:
            with float32_upcasts_keep_float64():
                return self._step(x, t, clean)
        return self._step(x, t, clean)

    def _step(self, x, t, clean):
        B, F = x.shape[:2]
        zeros = torch.zeros(F, self.cfg.depth, 2, B, self.cfg.tokens, self.cfg.hidden_size)
        if clean[0, 0] > 0.5:
            self.off.write_latents_to_cache(x.permute(0, 2, 1, 3, 4), None, None)
            return None, zeros, zeros
        out = self.off.forward(x.permute(0, 2, 1, 3, 4), t[:, 0], None)
        return out.permute(0, 2, 1, 3, 4), None, None


def main():
    cases, informational = [], []
    for name, kw in VARIANTS.items():
        with tempfile.TemporaryDirectory() as work:
            run_variant(name, kw, work, cases, informational)
    commit = os.environ.get("OFFICIAL_COMMIT", "ce3ab5f03f6222fa9bb189066a78d0c450bab65e")
    out = {"official_commit": commit, "size": {**SIZE, "chunk": CHUNK, "p_max": P_MAX}, "variants": VARIANTS,
           "dtype": "float32",
           "weights": {"random": "the official initialisation (seed 0), then N(0, 0.05) added to every parameter",
                       "trained": "the random weights, then train_tiny.py in stages (steps, peak lr, seed): AdamW, "
                                  "cosine lr, batch 4, the official CleanPrefixIDDPM loss (eps MSE + variational "
                                  "bound) on moving-blob latents, clean prefixes of 1, 5, 8 frames",
                       "stages": TRAINING_STAGES,
                       "training": TRAINING},
           "cases": cases,
           "informational": informational}
    json.dump(out, open(sys.argv[2], "w"), indent=1)
    for c in cases + informational:
        print(f"{c['max_abs_diff']:.3g}  {c['name']}")


if __name__ == "__main__":
    main()
