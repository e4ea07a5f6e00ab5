"""Shrunken copies of the shipped configs: same family, token ids, image sizes and patching
(so placeholder counts are the real ones), tiny widths and depths (so CPU tests stay fast)."""

from __future__ import annotations

from vtwcli.models import shipped_config_dict

TEXT_LAYERS = 3


def shrunk_config_dict(alias: str) -> dict:
    cfg = shipped_config_dict(alias)
    text = cfg["text_config"]
    text.update(hidden_size=64, intermediate_size=128, num_hidden_layers=TEXT_LAYERS, num_attention_heads=4)
    text["num_key_value_heads"] = 2
    rope = text.get("rope_parameters") or {}
    if "mrope_section" in rope:
        rope["mrope_section"] = [2, 3, 3]  # sums to head_dim / 2 = 64 / 4 / 2
    vis = cfg["vision_config"]
    mt = cfg["model_type"]
    if mt in ("qwen2_vl",):
        vis.update(depth=1, embed_dim=32, num_heads=2, hidden_size=64)
    elif mt == "qwen2_5_vl":
        vis.update(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                   fullatt_block_indexes=[1])
    else:
        vis.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        if "projection_dim" in vis:
            vis["projection_dim"] = 32
    return cfg
