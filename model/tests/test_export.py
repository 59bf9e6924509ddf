import dataclasses
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

import export_onnx

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HAVE_ORT = os.path.isdir(os.path.join(ROOT, "node_modules", "onnxruntime-node")) and shutil.which("node")


def run_ort(onnx_file, inputs, tmp_path):
    """Runs the graph in onnxruntime-node, the worker's runtime; returns {output name: array}."""
    spec = {"inputs": {}, "out_dir": str(tmp_path)}
    for name, arr in inputs.items():
        arr = arr.numpy()
        dtype = "int64" if arr.dtype == np.int64 else "float32"
        f = tmp_path / f"in_{name}.bin"
        f.write_bytes(arr.astype(np.int64 if dtype == "int64" else np.float32).tobytes())
        spec["inputs"][name] = {"file": str(f), "dtype": dtype, "dims": list(arr.shape)}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    subprocess.run(["node", os.path.join(os.path.dirname(__file__), "ort_run.mjs"), str(onnx_file),
                    str(tmp_path / "spec.json")], check=True, cwd=ROOT)
    shapes = json.loads((tmp_path / "shapes.json").read_text())
    dtypes = {"float32": np.float32, "float16": np.float16}
    return {k: np.frombuffer((tmp_path / f"{k}.bin").read_bytes(), dtypes[s["dtype"]]).reshape(s["dims"])
            for k, s in shapes.items()}


@pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime-node is not installed (run npm install first)")
@pytest.mark.parametrize("cached", [0, 5])
def test_onnx_matches_pytorch(model, tmp_path, cached):
    """The exported step equals PyTorch for an uncached call (P = 0) and a cached one."""
    onnx_file = tmp_path / "step.onnx"
    export_onnx.export(model, str(onnx_file))
    x, t, label, pos, cache = export_onnx.example_inputs(model.cfg, batch=2, cached=cached)
    with torch.no_grad():
        want_out, want_kv = model.step(x, t, label, pos, cache)
    caches = dict(zip(export_onnx.cache_input_names(model.cfg), export_onnx.split_cache(cache)))
    got = run_ort(onnx_file, dict(x=x, t=t, label=label, pos=pos, **caches), tmp_path)
    assert got["out"].shape == tuple(want_out.shape) and got["kv"].shape == tuple(want_kv.shape)
    assert np.abs(got["out"] - want_out.numpy()).max() <= 1e-4
    # kv leaves the graph as fp16: within half an fp16 step (plus the fp32 tolerance) of PyTorch's.
    assert got["kv"].dtype == np.float16
    want = want_kv.numpy()
    assert (np.abs(got["kv"].astype(np.float32) - want) <= 1e-4 + np.abs(want) * 2.0 ** -11).all()


def test_manifest_describes_the_graph(model, tmp_path):
    onnx_file = tmp_path / "step.onnx"
    export_onnx.export(model, str(onnx_file))
    m = export_onnx.manifest(model.cfg, "tiny", str(onnx_file), {"step": 3})
    assert m["onnx_sha256"] == export_onnx.sha256(str(onnx_file))
    assert m["tokens_per_frame"] == model.cfg.tokens and m["head_dim"] * m["heads"] == m["width"]
    assert len(m["schedule"]["alphas_cumprod"]) == m["schedule"]["train_timesteps"]
    assert m["l_train"] == m["p_max"] + m["chunk_frames"]
    import onnx
    graph_inputs = [i.name for i in onnx.load(str(onnx_file)).graph.input]
    io = m["io"]["inputs"]
    assert graph_inputs == [io["x"], io["t"], io["label"], io["pos"], *io["cache"]]
    assert len(io["cache"]) == 2 * m["depth"]
    # Context noise: clean frames unless the model was trained with noise; then the middle of its range.
    assert m["context_t"] == 0 and m["training"]["context_noise"] == 0
    noisy_cfg = dataclasses.replace(model.cfg, context_noise=200)
    assert export_onnx.manifest(noisy_cfg, "tiny", str(onnx_file), {})["context_t"] == 100
    # Serving length: the trained chunk by default; any shorter one on request, never a longer one.
    assert m["chunk_frames"] == m["trained_chunk_frames"] == model.cfg.chunk
    short = export_onnx.manifest(model.cfg, "tiny", str(onnx_file), {}, serve_chunk=model.cfg.chunk - 1)
    assert (short["chunk_frames"], short["trained_chunk_frames"]) == (model.cfg.chunk - 1, model.cfg.chunk)
    for bad in (0, model.cfg.chunk + 1):
        with pytest.raises(ValueError, match="serve_chunk"):
            export_onnx.manifest(model.cfg, "tiny", str(onnx_file), {}, serve_chunk=bad)
    assert export_onnx.manifest(noisy_cfg, "tiny", str(onnx_file), {}, context_t=40)["context_t"] == 40
