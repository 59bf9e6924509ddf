"""Record the official CausalSTDiT2 state_dict names and shapes at the test size (for the CI test).

    cd model/official/equivalence && OFFICIAL_SRC=<official checkout> /usr/bin/python3 record_keys.py ../official_state_dict_test.json
"""
import json, sys, torch
import stubs
from opensora.models.causal_stdit2.causal_stdit2 import CausalSTDiT2
base = dict(input_size=(9, 8, 8), in_channels=4, patch_size=(1, 2, 2), hidden_size=64, depth=2, num_heads=4,
            temp_extra_in_channels=1, max_tpe_len=7, model_max_length=6)
variants = {
    "cyclic+prefix": (dict(caption_channels=0, relative_tpe_mode="cyclic", cross_frame_attn="prev_prefix_3"), {}),
    "rope+prefix": (dict(caption_channels=0, relative_tpe_mode="rope", cross_frame_attn="prev_prefix_3"), {"relative_tpe_mode": "rope"}),
    "cross-attention": (dict(caption_channels=16, relative_tpe_mode="cyclic"), {"caption_channels": 16, "model_max_length": 6, "spatial_attn_enhance": None}),
}
out = {"official_commit": "ce3ab5f03f6222fa9bb189066a78d0c450bab65e", "models": {}}
for name, (off, ours) in variants.items():
    m = CausalSTDiT2(**base, **off)
    out["models"][name] = {"official": off, "ours": ours, "keys": {k: list(v.shape) for k, v in m.state_dict().items()}}
json.dump(out, open(sys.argv[1], "w"), indent=1)
