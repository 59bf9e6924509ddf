"""Load the official CausalSTDiT2 and IDDPM code (from $OFFICIAL_SRC) without installing its dependencies.

Stubs (scratch only): einops.rearrange (a small pattern implementation), timm's Mlp and DropPath,
the sequence-parallel / checkpoint / registry helpers, colossalai's get_current_device,
flash_attn_func and xformers' memory_efficient_attention (plain PyTorch math).
"""
import math
import os
import re
import sys
import types

import torch
import torch.nn as nn

# The official repository's files (git archive of commit ce3ab5f), outside this repository.
ROOT = os.environ.get("OFFICIAL_SRC", "/work/scratch-official")


def _parse(side):
    groups = []
    for tok in re.findall(r"\([^)]*\)|\S+", side):
        groups.append(tok[1:-1].split() if tok.startswith("(") else [tok])
    return groups


def rearrange(x, pattern, **sizes):
    lhs, rhs = [s.strip() for s in pattern.split("->")]
    lg, rg = _parse(lhs), _parse(rhs)
    assert len(lg) == x.dim(), (pattern, x.shape)
    known = dict(sizes)
    for g, n in zip(lg, x.shape):
        unknown = [a for a in g if a not in known]
        prod = math.prod(known[a] for a in g if a in known)
        if len(unknown) == 1:
            known[unknown[0]] = n // prod
        assert math.prod(known[a] for a in g) == n, (pattern, x.shape, known)
    elem = [a for g in lg for a in g]
    x = x.reshape([known[a] for a in elem])
    out_elem = [a for g in rg for a in g]
    x = x.permute([elem.index(a) for a in out_elem])
    return x.reshape([math.prod(known[a] for a in g) for g in rg])


class Mlp(nn.Module):
    """timm's Mlp (keys fc1, fc2), dropout 0."""
    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.0, **kw):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Identity):
    def __init__(self, p=0.0):
        super().__init__()


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False):
    """(B, N, H, hd) layout; causal aligned bottom-right as flash-attn 2.1+ does."""
    q, k, v = (z.transpose(1, 2) for z in (q, k, v))
    scale = softmax_scale or q.shape[-1] ** -0.5
    a = (q * scale) @ k.transpose(-2, -1)
    if causal:
        lq, lk = q.shape[2], k.shape[2]
        keep = torch.ones(lq, lk, dtype=torch.bool).tril(diagonal=lk - lq)
        a = a.masked_fill(~keep, float("-inf"))
    return (a.float().softmax(-1).to(q.dtype) @ v).transpose(1, 2).contiguous()


class BlockDiagonalMask:
    def __init__(self, q_seqlen, kv_seqlen):
        self.q, self.kv = q_seqlen, kv_seqlen

    @classmethod
    def from_seqlens(cls, q_seqlen, kv_seqlen):
        return cls(list(q_seqlen), list(kv_seqlen))


def memory_efficient_attention(q, k, v, p=0.0, attn_bias=None):
    """(1, N, H, hd); attn_bias a BlockDiagonalMask (query block i sees key block i only)."""
    q, k, v = (z.transpose(1, 2) for z in (q, k, v))
    a = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if attn_bias is not None:
        keep = torch.zeros(a.shape[-2], a.shape[-1], dtype=torch.bool)
        qo = ko = 0
        for nq, nk in zip(attn_bias.q, attn_bias.kv):
            keep[qo:qo + nq, ko:ko + nk] = True
            qo, ko = qo + nq, ko + nk
        a = a.masked_fill(~keep, float("-inf"))
    return (a.softmax(-1) @ v).transpose(1, 2).contiguous()


class _Registry:
    def register_module(self, name=None, *a, **k):
        if callable(name) and not isinstance(name, str):
            return name
        return lambda f: f


def _module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def _package(name, path):
    m = _module(name)
    m.__path__ = [os.path.join(ROOT, path)]
    return m


def install():
    _module("einops", rearrange=rearrange)
    _module("timm"); _module("timm.models"); _module("timm.models.layers", DropPath=DropPath)
    _module("timm.models.vision_transformer", Mlp=Mlp)
    _module("flash_attn", flash_attn_func=flash_attn_func)
    xf = _module("xformers"); ops = _module("xformers.ops", memory_efficient_attention=memory_efficient_attention)
    ops.fmha = types.SimpleNamespace(BlockDiagonalMask=BlockDiagonalMask); xf.ops = ops
    _module("colossalai"); _module("colossalai.utils", get_current_device=lambda: "cpu")
    for pkg, path in [("opensora", "opensora"), ("opensora.models", "opensora/models"),
                      ("opensora.models.layers", "opensora/models/layers"),
                      ("opensora.models.causal_stdit2", "opensora/models/causal_stdit2"),
                      ("opensora.utils", "opensora/utils"), ("opensora.schedulers", "opensora/schedulers")]:
        _package(pkg, path)
    _module("opensora.acceleration")
    _module("opensora.acceleration.checkpoint", auto_grad_checkpoint=lambda block, *args, **kw: block(*args, **kw))
    ident = lambda x, *a, **k: x
    _module("opensora.acceleration.communications", gather_forward_split_backward=ident,
            split_forward_gather_backward=ident, all_to_all=ident)
    _module("opensora.acceleration.parallel_states", get_sequence_parallel_group=lambda: None)
    _module("opensora.registry", MODELS=_Registry(), SCHEDULERS=_Registry())
    _module("opensora.utils.ckpt_utils", load_checkpoint=lambda *a, **k: None)


install()


def install_sampling():
    """What opensora.utils.video_gen imports beyond the model (unused by the kv-cache sampler)."""
    import importlib.util
    if importlib.util.find_spec("torchvision") is None:
        _module("torchvision")
    if importlib.util.find_spec("tqdm") is None:
        _module("tqdm", tqdm=lambda it, **k: it)
        _module("tqdm.auto", tqdm=lambda it, **k: it)
    sys.modules["colossalai.utils"].set_seed = lambda s: torch.manual_seed(s)
    _module("diffusers"); _module("diffusers.schedulers", LCMScheduler=object)
    _module("opensora.datasets", save_sample=lambda *a, **k: None)
    sys.modules["opensora.registry"].build_module = lambda *a, **k: None
    _module("opensora.utils.misc", to_torch_dtype=lambda d: torch.float32)
    _module("opensora.utils.train_utils", build_progressive_noise=lambda *a, **k: None)
    sys.modules["opensora.utils.ckpt_utils"].save_json = lambda *a, **k: None
    import importlib.util as iu
    path = os.path.join(ROOT, "opensora/schedulers/iddpm")
    spec = iu.spec_from_file_location("opensora.schedulers.iddpm", os.path.join(path, "__init__.py"),
                                      submodule_search_locations=[path])
    mod = iu.module_from_spec(spec)
    sys.modules["opensora.schedulers.iddpm"] = mod
    spec.loader.exec_module(mod)
