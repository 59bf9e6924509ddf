"""Train the small Ca2-VDM on procedurally generated bouncing-ball videos.

Runs on torch 1.13 (CPU) and torch 2.x (CUDA, bf16 autocast). Time-bounded (--minutes): the
learning rate decays over the time budget, checkpoints are written every few minutes and on exit,
and --resume continues from a checkpoint (full state, or the fp16 EMA weights alone).
"""
import argparse
import dataclasses
import json
import math
import os
import time

import torch

import ca2vdm
import data
import diffusion


def chunk_timesteps(batch, frames, chunk, generator, device):
    """One random timestep per chunk (the frames of a chunk share it, as at inference): (B, F)."""
    t = torch.randint(0, diffusion.TRAIN_STEPS, (batch, frames // chunk), generator=generator, device=device)
    return t.repeat_interleave(chunk, dim=1)


@torch.no_grad()
def diagnose(model, cfg, device, ab_all, ts=(250, 500, 750, 999), n=32):
    """One-step x0 PSNR for the last chunk of a clip given its true clean history, at several t."""
    g = torch.Generator(device=device).manual_seed(1234)
    clean, label = data.batch(n, cfg.l_train, cfg.frame_size, g, device)
    noise = torch.randn(clean.shape, generator=g, device=device)
    out = {}
    for t in ts:
        tt = torch.full((n, cfg.l_train), t, device=device)
        ab = ab_all[tt][..., None, None, None]
        pred = ca2vdm.training_forward(model, clean, diffusion.q_sample(clean, noise, ab), tt.float(), label, 0)
        x0 = (ab.sqrt() * diffusion.q_sample(clean, noise, ab) - (1 - ab).sqrt() * pred).clamp(-1, 1)
        l = cfg.chunk
        mse = ((x0[:, -l:] - clean[:, -l:]) ** 2).mean().item()
        out[t] = round(10 * math.log10(4.0 / max(mse, 1e-10)), 2)   # range 2 -> peak^2 = 4
    return out


class Bf16(torch.nn.Module):
    """The model's forward under bf16 autocast (CUDA); parameters, gradients and the loss stay fp32."""
    def __init__(self, model, device_type="cuda"):
        super().__init__()
        self.model, self.cfg, self.device_type = model, model.cfg, device_type

    def forward(self, *args):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.model(*args)


def noised(clean, cfg, g, device, ab_all):
    """Clips noised at one random t per chunk: (noisy, t, noise, ab), t (B, F)."""
    t = chunk_timesteps(clean.shape[0], cfg.l_train, cfg.chunk, g, device)
    ab = ab_all[t][..., None, None, None]
    noise = torch.randn(clean.shape, generator=g, device=device)
    return diffusion.q_sample(clean, noise, ab), t, noise, ab


def context_noised(clean, cfg, g, device, ab_all):
    """The conditioning stream: each clip's clean frames with light noise at one t ~ U[0, cfg.context_noise]
    (t = 0 leaves them exactly clean), so the model learns to cope with imperfect history, as its own
    generated frames are. Returns (context, context_t (B, F)); always a tensor, so a compiled graph stays one."""
    B, F = clean.shape[:2]
    if not cfg.context_noise:
        return clean, torch.zeros(B, F, dtype=torch.long, device=device)
    t = torch.randint(0, cfg.context_noise + 1, (B, 1), generator=g, device=device).expand(B, F)
    noise = torch.randn(clean.shape, generator=g, device=device)
    noisy = diffusion.q_sample(clean, noise, ab_all[t][..., None, None, None])
    return torch.where((t == 0)[..., None, None, None], clean, noisy), t


def fixed_batch(cfg, device, ab_all, n):
    """One fixed training batch (context, noisy, t, label, offset, noise, ab, clean, context_t) for checks."""
    g = torch.Generator(device=device).manual_seed(4321)
    clean, label = data.batch(n, cfg.l_train, cfg.frame_size, g, device)
    noisy, t, noise, ab = noised(clean, cfg, g, device, ab_all)
    context, context_t = context_noised(clean, cfg, g, device, ab_all)
    return context, noisy, t, label, 3, noise, ab, clean, context_t


def compiled_backward_without_autocast():
    """With autocast around a compiled module, torch 2.x traces the backward under autocast too
    (bf16 gradients, unlike eager): measured here as a loss that climbed while the fp32 loss of the
    same weights did not (pytorch/pytorch#153044). Autocast now sits inside the compiled module
    (Bf16); this also asks for eager semantics (no autocast in the backward) where torch has the switch."""
    try:
        import torch._functorch.config as functorch_config
        if hasattr(functorch_config, "backward_pass_autocast"):
            functorch_config.backward_pass_autocast = "off"
    except ImportError:
        pass


def save(path, model, ema, opt, step, elapsed):
    tmp = path + ".tmp"
    torch.save(dict(config=ca2vdm.config_dict(model.cfg), model=model.state_dict(), ema=ema.state_dict(),
                    opt=opt.state_dict(), step=step, elapsed=elapsed), tmp)
    os.replace(tmp, path)
    # Small fp16 copies (EMA for sampling and resuming, raw weights for resuming) fit in git.
    for name, net in (("ema", ema), ("model", model)):
        half = {k: v.half() for k, v in net.state_dict().items()}
        dest = os.path.join(os.path.dirname(path), f"{name}_fp16.pt")
        torch.save(dict(config=ca2vdm.config_dict(model.cfg), weights=half, step=step, elapsed=elapsed), dest + ".tmp")
        os.replace(dest + ".tmp", dest)   # a reader (the GPU script's copier) never sees half a file


def main(args):
    # Setup: device, model, EMA copy, optimiser
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    state = torch.load(args.resume, map_location="cpu") if args.resume else None
    window = {k: v for k, v in (("p_max", args.p_max), ("chunk", args.chunk)) if v is not None}
    if state and window:
        raise SystemExit("--p-max/--chunk set the window of a new model; a resumed one keeps its own")
    cfg = ca2vdm.Ca2Config(**state["config"]) if state else ca2vdm.Ca2Config(**{**ca2vdm.PRESETS[args.preset], **window})
    if args.widen_to is not None:
        if not state:
            raise SystemExit("--widen-to widens a resumed model; a new one takes --p-max")
        # Same weights, a wider window: keep the harmonic cap, so the temporal embedding is the old
        # one at a finer phase step and fine-tuning starts near where the resumed model was.
        cfg = dataclasses.replace(cfg, p_max=args.widen_to, pos_harmonics=cfg.pos_harmonics or cfg.l_train // 2)
    if args.context_noise is not None:   # a training setting, not the architecture: a resumed model may take it up
        cfg = dataclasses.replace(cfg, context_noise=args.context_noise)
    model = ca2vdm.Ca2VDM(cfg).to(device)
    ema = ca2vdm.Ca2VDM(cfg).to(device)
    if state:
        # A full checkpoint has both; an fp16 copy (ema_fp16.pt) seeds both from the EMA weights,
        # and --resume-raw adds the raw (non-EMA) weights saved beside it.
        ema_w = state["ema"] if "ema" in state else state["weights"]
        raw_w = state["model"] if "model" in state else (
            torch.load(args.resume_raw, map_location="cpu")["weights"] if args.resume_raw else ema_w)
        model.load_state_dict({k: v.float() for k, v in raw_w.items()})
        ema.load_state_dict({k: v.float() for k, v in ema_w.items()})
    else:
        ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    if state and "opt" in state and not args.fresh_optimizer:
        opt.load_state_dict(state["opt"])
    step0 = state["step"] if state else 0
    elapsed0 = state.get("elapsed", 0.0) if state else 0.0
    print(f"device={device} torch={torch.__version__} params={sum(p.numel() for p in model.parameters())/1e6:.2f}M "
          f"config={ca2vdm.config_dict(cfg)} resume_step={step0}", flush=True)

    # Setup: data and schedule
    os.makedirs(args.out, exist_ok=True)
    ckpt = os.path.join(args.out, "ckpt.pt")
    log = open(os.path.join(args.out, "loss.jsonl"), "a")
    g = torch.Generator(device=device).manual_seed(args.seed + step0)
    ab_all = diffusion.cosine_alphas_cumprod().to(device)
    F = cfg.l_train
    amp = device == "cuda" and not args.fp32
    budget = args.minutes * 60
    start, last_ckpt, step = time.time(), time.time(), step0
    running = None

    # bf16 autocast on CUDA lives inside the module (Bf16), so that it sits inside a compiled region
    # rather than around it. torch.compile (torch 2.x) fuses the many small element-wise ops that
    # bound a step of this narrow model on a GPU; it compiles before the first step, and a failure
    # there, or a gradient that is not eager's, falls back to eager.
    eager = Bf16(model) if amp else model
    net = eager
    if args.compile:
        if hasattr(torch, "compile"):
            compiled_backward_without_autocast()
            net = torch.compile(eager)
        else:
            print(f"--compile needs torch 2.x (this is {torch.__version__}): training eagerly", flush=True)
    ema_params, model_params = list(ema.parameters()), list(model.parameters())

    def loss_and_grads(net, context, noisy, t, label, offset, noise, ab, clean, context_t):
        pred = ca2vdm.training_forward(net, context, noisy, t.float(), label, offset, context_t.float())
        loss = diffusion.loss_fn(pred.float(), clean, noise, ab)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        return loss

    def gradient_check(net, batch):
        """The training gradient (this net, this precision) on one fixed batch, compared with the
        eager gradient in the same precision and with the eager fp32 one: (cosine, norm ratio) each.
        A compiled backward that differs from eager shows here long before it shows in the loss."""
        grads = {}
        for m in (net, eager, model):
            if m not in grads:   # net may be eager itself (bf16 without compile)
                loss_and_grads(m, *batch)
                grads[m] = torch.cat([p.grad.flatten() for p in model_params])
        opt.zero_grad(set_to_none=True)
        grads = [grads[m] for m in (net, eager, model)]
        cos = lambda a, b: round(torch.nn.functional.cosine_similarity(a, b, dim=0).item(), 4)
        ratio = lambda a, b: round((a.norm() / b.norm()).item(), 3)
        return dict(vs_eager=[cos(grads[0], grads[1]), ratio(grads[0], grads[1])],
                    vs_fp32=[cos(grads[0], grads[2]), ratio(grads[0], grads[2])])

    def keep_compiled(net, check):
        """Falls back to eager when the compiled gradient is not the eager one."""
        cos, ratio = check["vs_eager"]
        if net is eager or (cos > 0.95 and 0.8 < ratio < 1.25):
            return net
        print(f"compiled gradient differs from eager ({check}): training eagerly from here", flush=True)
        return eager
    check_batch = fixed_batch(cfg, device, ab_all, args.batch)   # the training shape: no recompile
    if net is not eager:   # compile now (on the check's first call), then check the gradient
        try:
            check = gradient_check(net, check_batch)
            print(f"compiled in {time.time() - start:.0f} s; compiled gradient vs eager: {check}", flush=True)
            net = keep_compiled(net, check)
        except Exception as e:   # a compiler problem must not cost the run
            print(f"torch.compile failed ({type(e).__name__}: {e}); training eagerly", flush=True)
            net = eager

    # Train until the time budget is spent
    while time.time() - start < budget and (args.steps is None or step - step0 < args.steps):
        frac = (time.time() - start) / budget
        warm = min(1.0, (step - step0 + 1) / args.warmup)
        lr = args.lr * warm * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = lr
        clean, label = data.batch(args.batch, F, cfg.frame_size, g, device)       # (B, F, C, H, W)
        drop = torch.rand(args.batch, generator=g, device=device) < args.label_dropout
        label = torch.where(drop, torch.full_like(label, cfg.num_labels), label)
        noisy, t, noise, ab = noised(clean, cfg, g, device, ab_all)               # t: (B, F)
        context, context_t = context_noised(clean, cfg, g, device, ab_all)
        offset = int(torch.randint(0, cfg.l_train, (1,), generator=g, device=device))
        loss = loss_and_grads(net, context, noisy, t, label, offset, noise, ab, clean, context_t)
        torch.nn.utils.clip_grad_norm_(model_params, 1.0)
        opt.step()
        with torch.no_grad():
            decay = min(args.ema, (1 + step - step0) / (10 + step - step0))
            torch._foreach_mul_(ema_params, decay)
            torch._foreach_add_(ema_params, model_params, alpha=1 - decay)
        step += 1
        loss = loss.detach()   # the running mean stays on the device: no sync per step
        running = loss if running is None else 0.98 * running + 0.02 * loss
        if step % args.log_every == 0:
            rec = dict(step=step, loss=round(running.item(), 5), batch_loss=round(loss.item(), 5), lr=lr,
                       elapsed=round(elapsed0 + time.time() - start, 1))
            if args.diag_every and step % args.diag_every == 0:
                rec["x0_psnr"] = diagnose(ema, cfg, device, ab_all)
                if net is not model:   # compiled, or bf16: how far its gradient is from eager (fp32)
                    rec["grad"] = gradient_check(net, check_batch)
                    net = keep_compiled(net, rec["grad"])
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            save(ckpt, model, ema, opt, step, elapsed0 + time.time() - start)
            last_ckpt = time.time()
    save(ckpt, model, ema, opt, step, elapsed0 + time.time() - start)
    final = dict(done=True, step=step)
    if args.diag_every:
        final["diag"] = diagnose(ema, cfg, device, ab_all)
    print(json.dumps(final), flush=True)


def parser():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--preset", default="small", choices=sorted(ca2vdm.PRESETS))
    p.add_argument("--out", default="runs/small")
    p.add_argument("--p-max", type=int, default=None,
                   help="cached frames P_max of a new model (default 12); serving speedup grows with P_max / chunk")
    p.add_argument("--chunk", type=int, default=None, help="frames per chunk l of a new model (default 4)")
    p.add_argument("--widen-to", type=int, default=None,
                   help="resume into a wider window: P_max of the result (the temporal embedding keeps its harmonics)")
    p.add_argument("--context-noise", type=int, default=None,
                   help="noise conditioning frames at t ~ U[0, N] (against drift; default: the model's own, 0 if new)")
    p.add_argument("--resume", default=None, help="ckpt.pt or ema_fp16.pt to continue from")
    p.add_argument("--resume-raw", default=None, help="model_fp16.pt (raw weights) with an fp16 --resume")
    p.add_argument("--fresh-optimizer", action="store_true")
    p.add_argument("--minutes", type=float, default=60.0, help="time budget; the LR decays over it")
    p.add_argument("--steps", type=int, default=None, help="optional cap on steps (smoke runs)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--min-lr-frac", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--label-dropout", type=float, default=0.1)
    p.add_argument("--ckpt-minutes", type=float, default=3.0)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--diag-every", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--fp32", action="store_true", help="disable bf16 autocast on CUDA")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (torch 2.x; eager if it fails)")
    p.add_argument("--seed", type=int, default=0)
    return p


if __name__ == "__main__":
    main(parser().parse_args())
