"""Tiny copies of the shipped configs: same family and layer pattern, same token ids, image
sizes and patching (so the processor inserts the real number of vision tokens), tiny widths
and depths, so a whole model builds and answers on a CPU in about a second.

``shrunk_config_dict(alias)`` is what ``load_model(alias, random_init=True, shrink=True)``
(``--random-init --shrink``) builds, and what the tests run every family end to end on.
"""

from __future__ import annotations

from typing import Any

TEXT_LAYERS = 3
HIDDEN = 64
HEADS, KV_HEADS, HEAD_DIM = 4, 2, 16
WINDOW = 16  # sliding windows shrink too, so short prompts still cross them


def shrunk_config_dict(alias: str, num_layers: int = TEXT_LAYERS) -> dict[str, Any]:
    """The alias's shipped config.json facts with tiny sizes (a fresh dict)."""
    from vtwcli.models.registry import shipped_config_dict

    return shrink_config_dict(shipped_config_dict(alias), num_layers)


def shrink_config_dict(cfg: dict[str, Any], num_layers: int = TEXT_LAYERS) -> dict[str, Any]:
    """Shrink a config.json-style dict in place (and return it); token ids and image settings are kept."""
    text = cfg["text_config"]
    _shrink_text(text, num_layers)
    vis = cfg.get("vision_config")
    if vis is not None:
        _shrink_vision(vis, text)
    for key in ("hidden_size", "projection_dim"):  # PaliGemma repeats the text width at the top level
        if key in cfg:
            cfg[key] = HIDDEN
    if "alignment_intermediate_size" in cfg:
        cfg["alignment_intermediate_size"] = 2 * HIDDEN
    if "projector_hidden_size" in cfg:
        cfg["projector_hidden_size"] = HIDDEN
    return cfg


def _shrink_text(text: dict[str, Any], num_layers: int) -> None:
    text.update(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=num_layers,
                num_attention_heads=HEADS, num_key_value_heads=KV_HEADS)  # fmt: skip
    if "head_dim" in text:
        text["head_dim"] = HEAD_DIM
    if text.get("layer_types"):
        kinds = list(dict.fromkeys(text["layer_types"]))  # every kind of layer the model has, interleaved
        last = text["layer_types"][-1]
        pattern = (kinds * num_layers)[:num_layers]
        if last not in pattern:
            pattern[-1] = last
        text["layer_types"] = pattern
    if "full_attn_idxs" in text:
        text["full_attn_idxs"] = [i for i, t in enumerate(text["layer_types"]) if t == "full_attention"]
    if text.get("sliding_window"):
        text["sliding_window"] = WINDOW
    rope = text.get("rope_parameters") or {}
    if "mrope_section" in rope:
        half = int(HEAD_DIM * rope.get("partial_rotary_factor", 1.0)) // 2
        rope["mrope_section"] = [half - 2 * (half // 3), half // 3, half // 3]
    if "num_experts" in text:
        text.update(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32)
        if "shared_expert_intermediate_size" in text:
            text["shared_expert_intermediate_size"] = 32
    if "linear_num_value_heads" in text:
        text.update(linear_num_value_heads=4, linear_num_key_heads=2, linear_key_head_dim=16, linear_value_head_dim=16)
    if "block_multiple_of" in text:
        text["block_multiple_of"] = 16


def _shrink_vision(vis: dict[str, Any], text: dict[str, Any]) -> None:
    if "depth" in vis:  # Qwen-style towers (Qwen2/2.5/3-VL, Qwen3.5, GLM-4.1V)
        vis.update(depth=2, num_heads=2)
        if "embed_dim" in vis:  # Qwen2-VL names the tower width embed_dim and the output hidden_size
            vis.update(embed_dim=32, hidden_size=HIDDEN)
        else:
            vis.update(hidden_size=32, intermediate_size=64)
        if "out_hidden_size" in vis:
            vis["out_hidden_size"] = HIDDEN
        if "deepstack_visual_indexes" in vis:
            vis["deepstack_visual_indexes"] = [0]  # injected after decoder layer 0
        if "fullatt_block_indexes" in vis:
            vis["fullatt_block_indexes"] = [1]
        return
    vis.update(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    if "head_dim" in vis:
        vis["head_dim"] = 16
    if "projection_dim" in vis:
        vis["projection_dim"] = HIDDEN if vis.get("model_type") == "siglip_vision_model" else 32


def save_shrunk(alias: str, directory, num_layers: int = TEXT_LAYERS, seed: int = 0):
    """Write a tiny random copy of ``alias`` (model and its stand-in processor) to ``directory``,
    loadable by path like any saved checkpoint (``vtw run --model DIR``). Returns the directory."""
    from pathlib import Path

    import torch
    from transformers import AutoModelForImageTextToText

    from vtwcli.errors import ModelNotFoundError
    from vtwcli.models.loading import config_from_dict
    from vtwcli.models.registry import SPECS, resolve

    spec = resolve(alias).spec
    if spec is None or spec.shipped().get("processor") is None:
        reason = (spec.shipped().get("processor_note") if spec else None) or "vtw ships no stand-in processor for it"
        raise ModelNotFoundError(f"no tiny copy of {alias}: {reason}")
    from vtwcli.models.synthetic import synthetic_processor

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config_from_dict(shrunk_config_dict(spec.alias, num_layers)))
    model.save_pretrained(out)
    synthetic_processor(SPECS[spec.alias].alias).save_pretrained(out)
    return out
