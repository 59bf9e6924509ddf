import dataclasses
import math

import pytest
import torch

import ca2vdm
import diffusion


def _clip(model, frames, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = model.cfg
    return torch.randn(batch, frames, c.channels, c.frame_size, c.frame_size, generator=g)


def test_temporal_attention_is_causal(model):
    """Changing a later frame never changes an earlier frame's K/V (or prediction)."""
    x = _clip(model, 8)
    t = torch.zeros(2, 8)
    label = torch.tensor([0, model.cfg.num_labels])
    out, kv = model.step(x, t, label, torch.tensor([3]), model.empty_cache(2))
    y = x.clone()
    y[:, 5:] += 1.0
    out2, kv2 = model.step(y, t, label, torch.tensor([3]), model.empty_cache(2))
    assert torch.allclose(kv[:5], kv2[:5], atol=1e-6)
    assert torch.allclose(out[:, :5], out2[:, :5], atol=1e-6)
    assert not torch.allclose(kv[5:], kv2[5:], atol=1e-3)


def test_cached_step_equals_full_recompute(model):
    """Cache of frames 0..P-1 plus a step on P..P+l-1 equals one call over all frames."""
    P, l = 8, model.cfg.chunk
    x = _clip(model, P + l)
    t = torch.cat([torch.zeros(2, P), torch.full((2, l), 500.0)], 1)
    label = torch.tensor([1, 2])
    full, kv_full = model.step(x, t, label, torch.tensor([5]), model.empty_cache(2))
    _, kv = model.step(x[:, :P], t[:, :P], label, torch.tensor([5]), model.empty_cache(2))
    part, kv_part = model.step(x[:, P:], t[:, P:], label, torch.tensor([5 + P]), model.cache_from_kv(kv))
    assert torch.allclose(full[:, P:], part, atol=1e-5)
    assert torch.allclose(kv_full[P:], kv_part, atol=1e-5)


def test_training_forward_matches_inference(model):
    """Each noisy chunk in the teacher-forcing pass sees exactly what it sees at inference."""
    c = model.cfg
    F, l = c.l_train, c.chunk
    clean, noisy = _clip(model, F, seed=1), _clip(model, F, seed=2)
    t = torch.arange(F // l).repeat_interleave(l)[None].float().expand(2, -1) * 200 + 50
    label = torch.tensor([0, 3])
    pred = ca2vdm.training_forward(model, clean, noisy, t, label, 7)
    for k in range(F // l):
        s = k * l
        cache = model.empty_cache(2)
        if s:
            _, kv = model.step(clean[:, :s], torch.zeros(2, s), label, torch.tensor([7]), cache)
            cache = model.cache_from_kv(kv)
        out, _ = model.step(noisy[:, s:s + l], t[:, s:s + l], label, torch.tensor([7 + s]), cache)
        assert torch.allclose(pred[:, s:s + l], out, atol=1e-5), k


def test_cyclic_positions_distinct_within_window(model):
    c = model.cfg
    emb = ca2vdm.temporal_pos_embed(torch.arange(40, 40 + c.l_train), c)
    d = torch.cdist(emb, emb) + torch.eye(c.l_train) * 1e3
    assert d.min() > 1e-3
    again = ca2vdm.temporal_pos_embed(torch.arange(40 + c.l_train, 40 + 2 * c.l_train), c)
    assert torch.allclose(emb, again, atol=1e-5)


def test_widened_window_keeps_the_embedding_at_a_finer_step():
    """A model widened from P_max 12 to 16 keeps the old harmonics: frame i of the 20-frame cycle gets
    the old embedding at phase i * 16 / 20; every position of the wider window stays distinct."""
    old = ca2vdm.Ca2Config(**ca2vdm.PRESETS["test"])
    wide = ca2vdm.Ca2Config(**{**ca2vdm.PRESETS["test"], "p_max": old.p_max + 4, "pos_harmonics": old.l_train // 2})
    idx = torch.arange(wide.l_train)
    emb = ca2vdm.temporal_pos_embed(idx, wide)
    phase = idx.float() * old.l_train / wide.l_train
    half = torch.arange(1, old.width // 2 + 1).float()
    k = torch.remainder(half - 1, old.l_train // 2) + 1
    ang = 2 * math.pi * phase[:, None] * k[None] / old.l_train
    assert torch.allclose(emb, torch.cat([torch.cos(ang), torch.sin(ang)], -1), atol=1e-5)
    d = torch.cdist(emb, emb) + torch.eye(wide.l_train) * 1e3
    assert d.min() > 1e-3
    assert not torch.allclose(emb, ca2vdm.temporal_pos_embed(idx, dataclasses.replace(wide, pos_harmonics=0)))


def test_sampling_with_cache_equals_recompute(model):
    """Within one window, cache sharing is exact: same frames as recomputing every step."""
    init = _clip(model, 4, batch=1)[0].clamp(-1, 1)
    a = diffusion.generate(model, 8, label=1, init=init, steps=4, guidance=2.0, seed=3, use_cache=True)
    b = diffusion.generate(model, 8, label=1, init=init, steps=4, guidance=2.0, seed=3, use_cache=False)
    assert a.shape == (8, 3, 32, 32)
    assert torch.allclose(a, b, atol=1e-4)


def test_batched_sampling_with_cache_equals_recompute(model):
    """The same holds for a batch of videos with different labels (as eval.py runs them), and with
    context noise: both paths condition on the same lightly noised history, at its timestep."""
    init = _clip(model, 4, batch=2).clamp(-1, 1)
    for context_t in (0, 120):
        a = diffusion.generate_batch(model, 8, [0, 2], init=init, steps=3, guidance=1.5, seed=4, use_cache=True,
                                     context_t=context_t)
        b = diffusion.generate_batch(model, 8, [0, 2], init=init, steps=3, guidance=1.5, seed=4, use_cache=False,
                                     context_t=context_t)
        assert a.shape == (2, 8, 3, 32, 32)
        assert torch.allclose(a, b, atol=1e-4), context_t
    # The noise reaches the model: the same run conditioned on clean history differs.
    clean = diffusion.generate_batch(model, 8, [0, 2], init=init, steps=3, guidance=1.5, seed=4)
    assert not torch.allclose(a, clean, atol=1e-3)


def test_a_shorter_served_chunk_is_the_start_of_a_trained_chunk(model):
    """Temporal attention is causal, so l < the trained chunk frames after a window are exactly the
    first l frames of a trained chunk there; sampling in such chunks keeps cache == recompute."""
    c = model.cfg
    l = c.chunk - 1
    clean, noisy = _clip(model, c.l_train, seed=1), _clip(model, c.l_train, seed=2)
    t = torch.full((2, c.l_train), 300.0)
    label = torch.tensor([1, 3])
    pred = ca2vdm.training_forward(model, clean, noisy, t, label, 5)
    s = c.l_train - c.chunk                                 # the last trained chunk, after P_max frames
    _, kv = model.step(clean[:, :s], torch.zeros(2, s), label, torch.tensor([5]), model.empty_cache(2))
    out, _ = model.step(noisy[:, s:s + l], t[:, s:s + l], label, torch.tensor([5 + s]), model.cache_from_kv(kv))
    assert torch.allclose(pred[:, s:s + l], out, atol=1e-5)
    init = _clip(model, 4, batch=2).clamp(-1, 1)
    a = diffusion.generate_batch(model, 7, [0, 2], init=init, steps=3, guidance=1.5, seed=4, chunk=l)
    b = diffusion.generate_batch(model, 7, [0, 2], init=init, steps=3, guidance=1.5, seed=4, chunk=l, use_cache=False)
    assert a.shape == (2, 7, 3, 32, 32)
    assert torch.allclose(a, b, atol=1e-4)
    for bad in (0, c.chunk + 1):
        with pytest.raises(ValueError, match="chunk must be"):
            diffusion.generate_batch(model, 4, [0], init=init[:1], steps=2, chunk=bad)


def test_context_frames_noise_at_their_timestep():
    frames = torch.rand(2, 4, 3, 8, 8) * 2 - 1
    ab = diffusion.cosine_alphas_cumprod()
    assert diffusion.context_frames(frames, 0, ab, torch.Generator().manual_seed(0)) is frames
    noisy = diffusion.context_frames(frames, 200, ab, torch.Generator().manual_seed(0))
    z = torch.randn(frames.shape, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(noisy, ab[200].sqrt() * frames + (1 - ab[200]).sqrt() * z)


def test_training_forward_context_t_is_the_conditioning_timestep(model):
    """context_t None is a clean history (t = 0); a context_t is what its K/V are computed at."""
    c = model.cfg
    F, l = c.l_train, c.chunk
    clean, noisy = _clip(model, F, seed=1), _clip(model, F, seed=2)
    t = torch.full((2, F), 400.0)
    label = torch.tensor([0, 3])
    base = ca2vdm.training_forward(model, clean, noisy, t, label, 2)
    assert torch.equal(base, ca2vdm.training_forward(model, clean, noisy, t, label, 2, torch.zeros(2, F)))
    ct = torch.full((2, F), 150.0)
    pred = ca2vdm.training_forward(model, clean, noisy, t, label, 2, ct)
    _, kv = model.step(clean[:, :l], ct[:, :l], label, torch.tensor([2]), model.empty_cache(2))
    out, _ = model.step(noisy[:, l:2 * l], t[:, l:2 * l], label, torch.tensor([2 + l]), model.cache_from_kv(kv))
    assert torch.allclose(pred[:, l:2 * l], out, atol=1e-5)
    assert not torch.allclose(pred[:, l:2 * l], base[:, l:2 * l], atol=1e-4)
