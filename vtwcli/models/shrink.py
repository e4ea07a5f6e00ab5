"""Tiny copies of the shipped configs: same family and layer pattern, same token ids, image
sizes and patching (so the processor inserts the real number of vision tokens), tiny widths
and depths, so a whole model builds and answers on a CPU in about a second.

``shrunk_config_dict(alias)`` is what the tests run every family end to end on.

:func:`cpu_config_dict` is the other size, what ``load_model(alias, random_init=True,
shrink=True)`` (``vtw bench --random-init --shrink``) builds: the real token geometry with a
decoder a CPU can time (16 layers of width 512) and a 2-layer vision tower, and a
:class:`Shrunk` record of what was made smaller, which the result prints.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from vtwcli.errors import UsageError

TEXT_LAYERS = 3
HIDDEN = 64
HEADS, KV_HEADS, HEAD_DIM = 4, 2, 16
WINDOW = 16  # sliding windows shrink too, so short prompts still cross them


def shrunk_config_dict(alias: str, num_layers: int = TEXT_LAYERS, real_layers: bool = False) -> dict[str, Any]:
    """The alias's shipped config.json facts with tiny sizes (a fresh dict)."""
    from vtwcli.models.registry import shipped_config_dict

    return shrink_config_dict(shipped_config_dict(alias), num_layers, real_layers)


def shrink_config_dict(cfg: dict[str, Any], num_layers: int = TEXT_LAYERS, real_layers: bool = False) -> dict[str, Any]:
    """Shrink a config.json-style dict in place (and return it); token ids and image settings are kept.

    Layer kinds: every kind the model has, interleaved from layer 0 (so a few layers hold them
    all), or with ``real_layers`` the checkpoint's own first ``num_layers`` layers (Qwen3.5's
    three linear-attention layers before each attention layer, for one)."""
    text = cfg["text_config"]
    _shrink_text(text, num_layers, real_layers)
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


def _shrink_text(text: dict[str, Any], num_layers: int, real_layers: bool = False) -> None:
    text.update(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=num_layers,
                num_attention_heads=HEADS, num_key_value_heads=KV_HEADS)  # fmt: skip
    if "head_dim" in text:
        text["head_dim"] = HEAD_DIM
    if text.get("layer_types") and real_layers:
        if len(text["layer_types"]) < num_layers:
            raise UsageError(f"the checkpoint has {len(text['layer_types'])} decoder layers, fewer than {num_layers}")
        text["layer_types"] = text["layer_types"][:num_layers]
    elif text.get("layer_types"):
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


def save_shrunk(alias: str, directory, num_layers: int = TEXT_LAYERS, seed: int = 0, real_layers: bool = False):
    """Write a tiny random copy of ``alias`` (model and its stand-in processor) to ``directory``,
    loadable by path like any saved checkpoint (``vtw run --model DIR``). Returns the directory.
    ``real_layers``: see :func:`shrink_config_dict`."""
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
    model = AutoModelForImageTextToText.from_config(config_from_dict(shrunk_config_dict(spec.alias, num_layers, real_layers)))
    model.save_pretrained(out)
    synthetic_processor(SPECS[spec.alias].alias).save_pretrained(out)
    return out


# ---------------------------------------------------------------- CPU-sized (vtw bench --shrink)
# what --shrink builds for a CPU benchmark
CPU_HIDDEN = 512
CPU_LAYERS = 16
CPU_HEADS = 8
CPU_VISION_HIDDEN = 64
CPU_VISION_LAYERS = 2


@dataclass(frozen=True)
class Shrunk:
    """What was shrunk, from (the real model) to (what was built)."""

    layers: tuple[int, int]
    hidden: tuple[int, int]
    heads: tuple[int, int]
    vision_layers: tuple[int, int] | None
    vision_hidden: tuple[int, int] | None

    def describe(self) -> str:
        text = (f"decoder {self.layers[1]} layers x width {self.hidden[1]} ({self.heads[1]} heads) instead of "
                f"{self.layers[0]} x {self.hidden[0]} ({self.heads[0]} heads)")  # fmt: skip
        if self.vision_layers is not None and self.vision_hidden is not None:
            text += (f"; vision tower {self.vision_layers[1]} layers x width {self.vision_hidden[1]} instead of "
                     f"{self.vision_layers[0]} x {self.vision_hidden[0]}")  # fmt: skip
        return text + "; image processor, chat template, vocabulary and vision-token count are the real model's"

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": list(self.layers), "hidden_size": list(self.hidden), "heads": list(self.heads),
            "vision_layers": list(self.vision_layers) if self.vision_layers else None,
            "vision_hidden_size": list(self.vision_hidden) if self.vision_hidden else None,
        }  # fmt: skip


def _scale_sections(sections: list[int], total: int) -> list[int]:
    """Integer sections proportional to ``sections`` that sum to ``total``."""
    whole = sum(sections)
    out = [max(1, s * total // whole) for s in sections]
    out[-1] += total - sum(out)
    return out


def _filter_indexes(values, limit: int):
    if not isinstance(values, list):
        return values
    kept = sorted({min(int(v), limit - 1) for v in values if isinstance(v, int)})
    return kept


def cpu_config_dict(
    cfg: dict[str, Any], *, hidden: int = CPU_HIDDEN, layers: int = CPU_LAYERS, heads: int = CPU_HEADS,
    vision_hidden: int = CPU_VISION_HIDDEN, vision_layers: int = CPU_VISION_LAYERS,
) -> tuple[dict[str, Any], Shrunk]:  # fmt: skip
    """A copy of a multimodal config dict with the decoder and vision tower cut to a CPU's size
    (the processor-facing settings kept: image size, patching, token ids, vocabulary), and what changed.
    The edits are made by field name, the same for every family."""
    cfg = copy.deepcopy(cfg)
    text = cfg.get("text_config")
    if not isinstance(text, dict) or "hidden_size" not in text or "num_hidden_layers" not in text:
        raise UsageError("--shrink needs a model with a text decoder config (text_config); this one has none")
    h0, l0 = int(text["hidden_size"]), int(text["num_hidden_layers"])
    nh0 = int(text.get("num_attention_heads") or 1)
    kv0 = int(text.get("num_key_value_heads") or nh0)
    l1 = min(layers, l0)
    h1 = min(hidden, h0)
    nh1 = min(heads, nh0)
    head_dim = h1 // nh1
    text.update(hidden_size=h1, num_hidden_layers=l1, num_attention_heads=nh1,
                num_key_value_heads=max(1, nh1 * kv0 // nh0))  # fmt: skip
    if "head_dim" in text:
        text["head_dim"] = head_dim
    for key in ("intermediate_size", "moe_intermediate_size"):
        if isinstance(text.get(key), int):
            text[key] = max(8, int(text[key] * h1 / h0) // 8 * 8)
    if isinstance(text.get("layer_types"), list):
        text["layer_types"] = text["layer_types"][:l1]
    for key in ("full_attn_idxs", "mlp_only_layers"):
        if isinstance(text.get(key), list):
            text[key] = [i for i in text[key] if isinstance(i, int) and i < l1]
    for rope_key in ("rope_parameters", "rope_scaling"):
        rope = text.get(rope_key)
        if isinstance(rope, dict) and isinstance(rope.get("mrope_section"), list):
            rope["mrope_section"] = _scale_sections(rope["mrope_section"], head_dim // 2)
    if isinstance(cfg.get("projection_dim"), int) and cfg["projection_dim"] == h0:
        cfg["projection_dim"] = h1
    vision = cfg.get("vision_config")
    v_layers = v_hidden = None
    if isinstance(vision, dict):
        v_layers, v_hidden = _cpu_vision(vision, h0, h1, vision_hidden, vision_layers)
    shrunk = Shrunk(layers=(l0, l1), hidden=(h0, h1), heads=(nh0, nh1), vision_layers=v_layers, vision_hidden=v_hidden)
    return cfg, shrunk


def _cpu_vision(vision: dict[str, Any], h0: int, h1: int, width: int, depth: int):
    """Narrow and shorten the vision tower in place; outputs that feed the decoder follow its width."""
    depth_key = "depth" if "depth" in vision else "num_hidden_layers" if "num_hidden_layers" in vision else None
    if depth_key is None:
        return None, None
    d0 = int(vision[depth_key])
    index_lists = [k for k in ("fullatt_block_indexes", "deepstack_visual_indexes") if isinstance(vision.get(k), list)]
    d1 = max(min(depth, d0), *(len(vision[k]) for k in index_lists)) if index_lists else min(depth, d0)
    vision[depth_key] = d1
    for key in index_lists:
        n = len(vision[key])
        vision[key] = list(range(d1 - n, d1)) if key == "fullatt_block_indexes" else list(range(n))
    # the tower's own width: embed_dim (Qwen2-VL, whose hidden_size is the merger's output) or hidden_size
    width_key = "embed_dim" if "embed_dim" in vision else "hidden_size"
    w0 = int(vision.get(width_key) or 0)
    if not w0:
        return (d0, d1), None
    vision[width_key] = width
    heads_key = "num_heads" if "num_heads" in vision else "num_attention_heads"
    if heads_key in vision:
        vision[heads_key] = max(1, width // 64)
    if "head_dim" in vision:
        vision["head_dim"] = width // max(1, vision.get(heads_key, 1))
    if isinstance(vision.get("intermediate_size"), int):
        vision["intermediate_size"] = 4 * width
    if width_key == "embed_dim" and vision.get("hidden_size") == h0:
        vision["hidden_size"] = h1  # Qwen2-VL: the merger projects into the decoder's width
    if vision.get("out_hidden_size") == h0:
        vision["out_hidden_size"] = h1
    if isinstance(vision.get("projection_dim"), int):  # the decoder's width (PaliGemma) or the tower's own (CLIP)
        vision["projection_dim"] = h1 if vision["projection_dim"] == h0 else width
    return (d0, d1), (w0, width)
