"""Writes the fixture that holds shared/sampler/iddpm.ts to this folder's sampler.

    cd model && /usr/bin/python3 -m official.fixtures ../test/shared/sampler/fixtures/iddpm-official.json
"""
import json
import sys

import torch

from .export import linear_alphas_cumprod
from .sampling import Schedule


def main(path):
    steps, F, C, H, W = 10, 2, 2, 2, 3
    sch = Schedule(steps)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, F, C, H, W, generator=g) * 3
    out = torch.randn(1, F, 2 * C, H, W, generator=g)
    noise = torch.randn(1, F, C, H, W, generator=g)
    tables = {k: getattr(sch, v).tolist() for k, v in [("alphasCumprod", "ac"), ("sqrtRecipAc", "sqrt_recip_ac"),
              ("sqrtRecipm1Ac", "sqrt_recipm1_ac"), ("coef1", "coef1"), ("coef2", "coef2"), ("logBetas", "log_betas"),
              ("postLogVar", "post_log_var")]}
    fixture = {"alphas_cumprod": [float(a) for a in linear_alphas_cumprod()], "steps": steps, "timesteps": sch.timesteps,
               "tables": tables, "frame_values": C * H * W, "x": x.flatten().tolist(), "out": out.flatten().tolist(),
               "noise": noise.flatten().tolist(),
               "next": {str(i): sch.iddpm_step(x, out, i, noise).flatten().tolist() for i in (9, 5, 0)}}
    with open(path, "w") as f:
        json.dump(fixture, f)


if __name__ == "__main__":
    main(sys.argv[1])
