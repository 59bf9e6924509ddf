import json

import torch

import ca2vdm
import data
import diffusion
import train


def test_generator_is_deterministic():
    a, la = data.make_video(42, 12)
    b, lb = data.make_video(42, 12)
    c, _ = data.make_video(43, 12)
    assert torch.equal(a, b) and la == lb
    assert not torch.equal(a, c)
    assert a.shape == (12, 3, 32, 32) and a.min() >= -1 and a.max() <= 1


def test_video_continues_consistently():
    """Frames [8, 16) rendered on their own equal frames 8.. of a longer render (pure function of time)."""
    p = data.params_from_seed(7)
    assert torch.allclose(data.render(p, 16)[:, 8:], data.render(p, 8, first=8), atol=1e-5)


def test_balls_are_found_by_colour():
    seed = next(s for s in range(100) if data.params_from_seed(s)["count"][0] == 1)   # one ball: no occlusion
    video, label = data.make_video(seed, 1)
    params = data.params_from_seed(seed)
    found = data.find_balls(video[0])
    assert len(found) <= label + 1
    assert len(found) >= 1
    centre = data.positions(params, 1, 32)[0, :, 0]       # (3, 2)
    for colour, (x, y) in found.items():
        slot = params["colour"][0].tolist().index(colour)
        assert abs(x - float(centre[slot, 0])) < 1.0 and abs(y - float(centre[slot, 1])) < 1.0


def _fixed_batch_loss(model):
    """Loss on one fixed batch at fixed timesteps and noise: a low-variance yardstick."""
    g = torch.Generator().manual_seed(99)
    clean, label = data.batch(16, model.cfg.l_train, 32, g)
    t = torch.linspace(50, 950, 16).long()[:, None].repeat_interleave(model.cfg.l_train, 1)
    ab = diffusion.cosine_alphas_cumprod()[t][..., None, None, None]
    noise = torch.randn(clean.shape, generator=g)
    with torch.no_grad():
        pred = ca2vdm.training_forward(model, clean, diffusion.q_sample(clean, noise, ab), t.float(), label, 0)
        return diffusion.loss_fn(pred, clean, noise, ab).item()


def test_training_smoke_lowers_loss(tmp_path):
    """A short run of the real training loop (resumable checkpoint included) lowers the loss."""
    args = train.parser().parse_args([
        "--preset", "test", "--out", str(tmp_path), "--minutes", "5", "--steps", "30", "--batch", "8",
        "--lr", "3e-3", "--min-lr-frac", "1.0", "--warmup", "1", "--ema", "0.9", "--ckpt-minutes", "10",
        "--log-every", "1", "--device", "cpu", "--fp32"])
    train.main(args)
    assert len(open(tmp_path / "loss.jsonl").readlines()) == 30
    state = torch.load(tmp_path / "ckpt.pt")
    torch.manual_seed(0)
    before = ca2vdm.Ca2VDM(ca2vdm.Ca2Config(**state["config"]))     # the run's initial weights
    after = ca2vdm.Ca2VDM(ca2vdm.Ca2Config(**state["config"]))
    after.load_state_dict(state["model"])
    assert _fixed_batch_loss(after) < 0.8 * _fixed_batch_loss(before)


def test_context_noise_per_clip():
    """Conditioning frames: one t per clip in [0, context_noise], noised at it; t = 0 stays exactly clean."""
    cfg = ca2vdm.Ca2Config(**{**ca2vdm.PRESETS["test"], "context_noise": 300})
    ab = diffusion.cosine_alphas_cumprod()
    clean, _ = data.batch(64, cfg.l_train, 32, torch.Generator().manual_seed(1))
    context, t = train.context_noised(clean, cfg, torch.Generator().manual_seed(2), "cpu", ab)
    assert t.shape == clean.shape[:2] and bool((t == t[:, :1]).all())
    assert int(t.min()) >= 0 and int(t.max()) <= 300 and len(set(t[:, 0].tolist())) > 10
    for b in range(64):
        err = (context[b] - ab[t[b, 0]].sqrt() * clean[b]).std().item()
        if int(t[b, 0]) == 0:
            assert torch.equal(context[b], clean[b])
        else:   # what is left is the noise, at the scale of its t
            assert abs(err / (1 - ab[t[b, 0]]).sqrt().item() - 1) < 0.1
    plain = ca2vdm.Ca2Config(**ca2vdm.PRESETS["test"])
    context, t = train.context_noised(clean, plain, torch.Generator().manual_seed(2), "cpu", ab)
    assert context is clean and not bool(t.any())


def test_context_noise_is_a_training_setting(tmp_path):
    """--context-noise trains (and records) a model whose history is noised; a resume keeps it."""
    common = ["--preset", "test", "--minutes", "5", "--steps", "2", "--batch", "4", "--device", "cpu", "--fp32",
              "--log-every", "1"]
    train.main(train.parser().parse_args(common + ["--out", str(tmp_path / "a"), "--context-noise", "250"]))
    state = torch.load(tmp_path / "a" / "ckpt.pt")
    assert state["config"]["context_noise"] == 250
    train.main(train.parser().parse_args(common + ["--out", str(tmp_path / "b"), "--resume", str(tmp_path / "a" / "ckpt.pt")]))
    assert torch.load(tmp_path / "b" / "ckpt.pt")["config"]["context_noise"] == 250


class _Scaled(torch.nn.Module):
    """Stands in for a compiled model: same weights, output times `scale` (scale 1 = faithful)."""
    def __init__(self, model, scale):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, *args):
        out, kv = self.model(*args)
        return out * self.scale, kv

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.model, name)


class _Broken(_Scaled):
    def forward(self, *args):
        raise RuntimeError("no compiler here")


def _run_compiled(tmp_path, monkeypatch, capsys, fake):
    """A 4-step run with --compile, torch.compile replaced by `fake`; returns what it printed."""
    monkeypatch.setattr(torch, "compile", fake, raising=False)
    args = train.parser().parse_args([
        "--preset", "test", "--out", str(tmp_path), "--steps", "4", "--batch", "2", "--log-every", "2",
        "--diag-every", "2", "--device", "cpu", "--compile"])
    train.main(args)
    return capsys.readouterr().out


def test_a_compiler_failure_falls_back_to_eager(tmp_path, monkeypatch, capsys):
    out = _run_compiled(tmp_path, monkeypatch, capsys, lambda model: _Broken(model, 1.0))
    assert "torch.compile failed (RuntimeError: no compiler here); training eagerly" in out
    assert len(open(tmp_path / "loss.jsonl").readlines()) == 2


def test_compiled_gradient_is_checked_against_eager(tmp_path, monkeypatch, capsys):
    """A compiled net whose gradient is eager's is kept; one whose gradient differs (here: its
    output scaled by 1.5, so its gradient is not eager's) is dropped for eager training."""
    out = _run_compiled(tmp_path / "same", monkeypatch, capsys, lambda model: _Scaled(model, 1.0))
    assert '"vs_eager": [1.0, 1.0]' in out and "training eagerly" not in out
    out = _run_compiled(tmp_path / "off", monkeypatch, capsys, lambda model: _Scaled(model, 1.5))
    assert "compiled gradient differs from eager" in out and "training eagerly from here" in out
    logged = [json.loads(l) for l in open(tmp_path / "off" / "loss.jsonl")]
    assert "grad" not in logged[-1]   # after the fallback the net is eager: nothing left to check


def test_bf16_wrapper_is_the_model_under_autocast():
    """train.Bf16 runs the model's forward in bf16 (here on the CPU's autocast): close to fp32, not equal."""
    torch.manual_seed(0)
    model = ca2vdm.build("test")
    for p in model.parameters():   # adaLN-Zero starts at an output of 0: give it something to round
        torch.nn.init.normal_(p, std=0.05)
    g = torch.Generator().manual_seed(1)
    clean, label = data.batch(2, model.cfg.l_train, 32, g)
    t = torch.full((2, model.cfg.l_train), 500.0)
    bf16 = ca2vdm.training_forward(train.Bf16(model, "cpu"), clean, clean, t, label, 2)
    fp32 = ca2vdm.training_forward(model, clean, clean, t, label, 2)
    assert not torch.equal(bf16.float(), fp32)
    assert torch.allclose(bf16.float(), fp32, atol=0.05 * fp32.abs().max().item())


def test_widen_resumes_into_a_wider_window(tmp_path):
    """--widen-to resumes a trained model with a wider P_max: same weights, the harmonic cap kept,
    and the training loop runs on the wider clips."""
    first, second = tmp_path / "a", tmp_path / "b"
    common = ["--minutes", "5", "--batch", "4", "--ckpt-minutes", "10", "--log-every", "1", "--device", "cpu", "--fp32"]
    train.main(train.parser().parse_args(["--preset", "test", "--out", str(first), "--steps", "1", *common]))
    train.main(train.parser().parse_args(["--resume", str(first / "ckpt.pt"), "--widen-to", "12", "--steps", "2",
                                          "--out", str(second), *common]))
    a, b = torch.load(first / "ckpt.pt"), torch.load(second / "ckpt.pt")
    assert b["config"]["p_max"] == 12 and b["config"]["pos_harmonics"] == (a["config"]["p_max"] + a["config"]["chunk"]) // 2
    assert b["step"] == a["step"] + 2
    assert {k: v.shape for k, v in a["model"].items()} == {k: v.shape for k, v in b["model"].items()}

