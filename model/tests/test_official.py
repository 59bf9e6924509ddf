"""The official network (model/official): its ONNX step graph, sampling with both caches, the converter."""
import json
import os

import numpy as np
import pytest
import torch

from official import convert, export, sampling, stdit2
from test_export import HAVE_ORT, run_ort

HERE = os.path.dirname(__file__)
VARIANTS = {
    "cyclic+prefix": {},                                                   # the official video-prediction configs
    "rope+prefix": {"relative_tpe_mode": "rope"},
    "cross-attention": {"caption_channels": 16, "model_max_length": 6, "spatial_attn_enhance": None},
}


def tiny(**overrides):
    """The test preset with random weights; zero-initialised branches perturbed so every path matters."""
    torch.manual_seed(0)
    m = stdit2.build("test", **overrides)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def call(model, d, kv_dtype="float32"):
    """The step on a dict of graph inputs, through the same wrapper the export traces (K/V kept fp32)."""
    saved, export.KV_DTYPE = export.KV_DTYPE, kv_dtype
    try:
        with torch.no_grad():
            outs = export.StepGraph(model)(*[d[n] for n in export.input_names(model.cfg)])
    finally:
        export.KV_DTYPE = saved
    return dict(zip(export.output_names(model.cfg), outs))


def test_state_dict_is_the_official_one():
    """Names and shapes equal those the official CausalSTDiT2 has at the same size (recorded from it)."""
    recorded = json.load(open(os.path.join(HERE, "..", "official", "official_state_dict_test.json")))
    for name, kw in recorded["models"].items():
        ours = {k: list(v.shape) for k, v in stdit2.build("test", **kw["ours"]).state_dict().items()}
        assert ours == kw["keys"], name


@pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime-node is not installed (run npm install first)")
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_onnx_matches_pytorch(variant, tmp_path):
    """ONNX equals PyTorch (<= 1e-4) for an uncached cache-write call, a cached denoising call with
    the spatial prefix cache, and a cached write call; kv within an fp16 step."""
    model = tiny(**VARIANTS[variant])
    onnx_file = tmp_path / "step.onnx"
    export.export(model, str(onnx_file))
    cases = {"uncached write": dict(batch=2, frames=1, cached=0, clean=1.0),
             "cached denoise": dict(batch=2, frames=2, cached=4, clean=0.0, pos=9),
             "cached write": dict(batch=1, frames=2, cached=5, clean=1.0, pos=30)}
    for name, kw in cases.items():
        d = export.example_inputs(model.cfg, seed=len(name), **kw)
        want = call(model, d)
        got = run_ort(onnx_file, d, tmp_path)
        assert set(got) == set(want), name
        assert np.abs(got["out"] - want["out"].numpy()).max() <= 1e-4, name
        for k in ("kv", "kv_prefix"):
            if k in want:
                w = want[k].numpy()
                assert got[k].dtype == np.float16 and got[k].shape == w.shape
                assert (np.abs(got[k].astype(np.float32) - w) <= 1e-4 + np.abs(w) * 2.0 ** -11).all(), (name, k)


def test_rotary_cache_order_is_free_given_positions():
    """Rotary keys are cached un-rotated: the cache in ring order with its window positions gives the
    same call as the cache in time order."""
    model = tiny(relative_tpe_mode="rope")
    d = export.example_inputs(model.cfg, frames=2, cached=5, pos=12)
    d["cache_pos"] = torch.arange(5)
    want = call(model, d)["out"]
    perm = torch.tensor([3, 4, 0, 1, 2])                   # slot s holds frame perm[s]
    ring = dict(d, cache_pos=perm)
    for n in export.cache_input_names(model.cfg):
        ring[n] = d[n][:, :, :, perm]
    assert (call(model, ring)["out"] - want).abs().max() <= 1e-5
    # ...and the positions matter: the same cache said to be in another order is another call.
    assert (call(model, dict(d, cache_pos=perm))["out"] - want).abs().max() > 1e-3


def test_prefix_cache_frames_follow_the_official_rule():
    assert stdit2.prefix_frame_indices(8, 3) == [5, 6, 7]
    assert stdit2.prefix_frame_indices(1, 3) == [0, 0, 0]
    assert stdit2.prefix_frame_indices(2, 3) == [0, 0, 1]


def test_temporal_attention_is_causal_within_a_call():
    """A later frame of the call never changes an earlier frame's prediction or K/V."""
    model = tiny()
    d = export.example_inputs(model.cfg, frames=2, cached=3)
    a = call(model, d)
    d2 = dict(d, x=d["x"].clone())
    d2["x"][:, 1] += 1.0
    b = call(model, d2)
    assert (a["out"][:, 0] - b["out"][:, 0]).abs().max() == 0
    assert (a["kv"][0].float() - b["kv"][0].float()).abs().max() == 0
    assert (a["out"][:, 1] - b["out"][:, 1]).abs().max() > 1e-3


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("sampler", ["iddpm", "ddim"])
def test_sampling_with_cache_equals_window_recompute(variant, sampler):
    """Three chunks after one starting frame (the window never drops a frame: 1 + 2 * 2 <= P_max):
    caches written once per chunk give the same latents as rebuilding them at every step."""
    model = tiny(**VARIANTS[variant])
    y = torch.randn(1, 6, 16) if model.cfg.caption_channels else None
    init = torch.randn(1, 1, 4, 8, 8)
    torch.manual_seed(5)
    cached = sampling.generate(model, init, 3, steps=3, y=y, sampler=sampler, context_t=50)
    torch.manual_seed(5)
    recomputed = sampling.generate(model, init, 3, steps=3, y=y, sampler=sampler, context_t=50, use_cache=False)
    assert cached.shape == (1, 7, 4, 8, 8)
    assert (cached - recomputed).abs().max() <= 1e-4
    # The chunks depend on the starting frame (the caches carry it).
    torch.manual_seed(5)
    other = sampling.generate(model, init + 1.0, 3, steps=3, y=y, sampler=sampler, context_t=50)
    assert (other[:, 1:] - cached[:, 1:]).abs().max() > 1e-3


def test_respaced_schedule_is_iddpms():
    ts = sampling.respaced_timesteps(100)
    assert len(ts) == 100 and ts[:3] == [0, 10, 20] and ts[-1] == 999
    sch = sampling.Schedule(100)
    assert np.allclose(sch.ac.numpy(), export.linear_alphas_cumprod()[ts], rtol=1e-5)


# --------------------------------------------------------------------------------------------
# The converter
# --------------------------------------------------------------------------------------------

def official_cfg(**overrides):
    return {"type": "CausalSTDiT2-Tiny", "caption_channels": 0, "temp_extra_in_channels": 1, "max_tpe_len": 33,
            "relative_tpe_mode": "cyclic", "cross_frame_attn": "prev_prefix_3", "enable_flashattn": True,
            "from_pretrained": None, **overrides}


def test_config_from_the_official_model_dict():
    cfg = convert.to_config(official_cfg(), 8, 25, (256, 256))
    assert (cfg.depth, cfg.hidden_size, cfg.num_heads, cfg.tokens) == (2, 1152, 16, 256)
    assert cfg.spatial_attn_enhance == "prev_frames_3" and cfg.max_tpe_len == 33 and cfg.chunk == 8
    cfg = convert.to_config({"type": "CausalSTDiT2-XL/2", "relative_tpe_mode": "rope", "max_tpe_len": 33}, 8, 25, (256, 256))
    assert cfg.caption_channels == 4096 and cfg.depth == 28 and cfg.prefix_frames == 0   # the constructor's defaults


@pytest.mark.parametrize("bad, key", [
    ({"type": "STDiT-XL/2"}, "model.type"),
    ({"is_causal": "partial"}, "model.is_causal"),
    ({"relative_tpe_mode": None}, "model.relative_tpe_mode"),
    ({"relative_tpe_mode": "offset"}, "model.relative_tpe_mode"),
    ({"cross_frame_attn": None, "spatial_attn_enhance": "first_frame"}, "model.spatial_attn_enhance"),
    ({"max_tpe_len": 30}, "model.max_tpe_len"),
    ({"patch_size": (2, 2, 2)}, "model.patch_size"),
    ({"some_new_option": 1}, "model.some_new_option"),
])
def test_unservable_config_is_an_error_naming_the_key(bad, key):
    with pytest.raises(convert.ConvertError, match=key.replace(".", r"\.")):
        convert.to_config(official_cfg(**bad), 8, 25, (256, 256))


def test_checkpoint_errors_name_the_key(tmp_path):
    model = tiny()
    state = model.state_dict()
    fresh = lambda: stdit2.build("test")                   # noqa: E731
    convert.load_weights(fresh(), dict(state))             # the same size loads
    missing = dict(state)
    del missing["blocks.1.attn_cf.qkv.weight"]
    with pytest.raises(convert.ConvertError, match=r"missing key 'blocks\.1\.attn_cf\.qkv\.weight'"):
        convert.load_weights(fresh(), missing)
    with pytest.raises(convert.ConvertError, match=r"unexpected key 'blocks\.2\.attn\.qkv\.weight'"):
        convert.load_weights(fresh(), {**state, "blocks.2.attn.qkv.weight": torch.zeros(1)})
    wrong = dict(state, **{"final_layer.linear.weight": torch.zeros(3, 64)})
    with pytest.raises(convert.ConvertError, match=r"key 'final_layer\.linear\.weight' has shape \(3, 64\)"):
        convert.load_weights(fresh(), wrong)
    with pytest.raises(convert.ConvertError, match="not a causal STDiT2"):
        convert.load_weights(fresh(), {"transformer.h.0.attn.c_attn.weight": torch.zeros(3, 3)})
    # A checkpoint file as the official training saves it (a bare state_dict, or under 'ema').
    torch.save({"ema": state}, tmp_path / "ema.pt")
    assert set(convert.read_state_dict(str(tmp_path / "ema.pt"))) == set(state)


def test_convert_a_checkpoint_end_to_end(tmp_path):
    """checkpoint + official config files -> a folder the manifest describes, with the same weights."""
    model = stdit2.build("CausalSTDiT2-Tiny", hidden_size=64, num_heads=4, latent_size=(4, 4), max_tpe_len=7,
                         chunk=2, p_max=5)
    torch.save(model.state_dict(), tmp_path / "model_ckpt.pt")
    (tmp_path / "train.py").write_text(
        "import os\n_ROOT = os.getenv('X', '/x')\nar_size = 2\n"
        "model = dict(type='CausalSTDiT2-Tiny', hidden_size=64, num_heads=4, from_pretrained=f'{_ROOT}/a.pth',\n"
        "    caption_channels=0, temp_extra_in_channels=1, max_tpe_len=7, relative_tpe_mode='cyclic',\n"
        "    cross_frame_attn='prev_prefix_3', enable_flashattn=True)\n")
    (tmp_path / "infer.py").write_text("kv_cache_max_seqlen = 5\nprefix_perturb_t = 50\n")
    args = convert.parser().parse_args(["--checkpoint", str(tmp_path / "model_ckpt.pt"), "--config", str(tmp_path / "train.py"),
                                        "--infer-config", str(tmp_path / "infer.py"), "--name", "conv", "--frame", "32x32",
                                        "--out", str(tmp_path / "out")])
    m = convert.main(args)
    assert m["format"] == 2 and m["chunk_frames"] == 2 and m["p_max"] == 5 and m["context_t"] == 50
    assert m["latent"]["height"] == 4 and m["prefix_cache"] == {"frames": 3} and m["positions"] == "cyclic"
    assert m["onnx_sha256"] == export.sha256(str(tmp_path / "out" / "step.onnx"))
    import onnx
    from onnx import numpy_helper
    g = onnx.load(str(tmp_path / "out" / "step.onnx")).graph
    io = m["io"]["inputs"]
    assert [i.name for i in g.input] == [io["x"], io["t"], io["clean"], io["pos"], *io["cache"], *io["prefix"]]
    weights = {i.name: i for i in g.initializer}
    assert any(np.array_equal(numpy_helper.to_array(w), model.state_dict()["final_layer.scale_shift_table"].numpy())
               for w in weights.values())
