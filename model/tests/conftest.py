import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import ca2vdm  # noqa: E402


@pytest.fixture
def model():
    """A tiny random-weight model; zero-initialised layers are perturbed so every path matters."""
    torch.manual_seed(0)
    m = ca2vdm.build("test")
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def pytest_configure(config):
    # torch 1.13's ONNX exporter warns about its own shape inference of constants in the rotary graph
    # (an exporter internal, "Triggered internally"); the ONNX-equals-PyTorch tests check the result.
    config.addinivalue_line("filterwarnings", "ignore:The shape inference of prim:UserWarning")
