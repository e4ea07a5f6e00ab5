"""Architecture-exact prefill FLOPs of the text decoder, read from the model's config.

The paper's formula (:mod:`vtwcli.bench.flops`) assumes dense multi-head attention and a 4h
MLP. This module counts what a given architecture really multiplies, layer by layer:

- the projections of each layer as built from the config: real head counts (GQA and MQA
  shrink the key/value projections), gated attention outputs, fused projections, the real
  intermediate size of a gated or plain MLP, MoE routers, shared experts and only the
  ``top_k`` experts each token is routed to;
- the attention core (``Q K^T`` and ``P V``) over the (query, key) pairs of each layer, with
  its real number of query heads and its query/key and value head sizes;
- linear-attention layers (gated delta rule) as the chunked algorithm computes them (chunks
  of 64 tokens, the sequence padded to a whole chunk), and short-convolution layers.

Convention: matrix-multiply FLOPs (2 per multiply-add), the one ``torch.utils.flop_counter``
uses, so a measurement can check it. Norms, activations, rotary embeddings, softmax, the
triangular solves of the delta rule and the embedding lookup are not counted; neither are
the vision tower and the lm_head (as in the paper's column). Decoder layer ``i`` runs on the
tokens it keeps: all ``s`` below K, ``s - n_vis`` from K on under VTW.

Attention pairs are counted two ways:

- ``attention="dense"``: every query against every key the layer holds, which is what eager
  and SDPA kernels multiply for a prefill (a mask zeroes entries after computing them);
- ``attention="attended"`` (the default): only the pairs the mask lets through, i.e. the
  causal triangle and, in sliding-window layers, the last ``window`` *original* positions,
  which is what causal/windowed kernels (FlashAttention) compute. Bidirectional image blocks
  (Gemma 3, PaliGemma's prefix) would add pairs inside the vision block; they are not added.

The layer shapes come from building the text decoder on PyTorch's meta device from the
config (no memory, no weights), so every projection the config implies is counted exactly
once, however a family names or fuses it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from vtwcli.errors import UsageError

TERA = 1e12
DELTA_RULE_CHUNK = 64  # chunk length of the chunked gated-delta-rule algorithm (transformers' and FLA's default)
ATTENTION_MODES = ("attended", "dense")


@dataclass(frozen=True)
class LayerShape:
    """What one decoder layer multiplies, per token and per attended pair."""

    mixer: str  # "attention", "linear_attention" or "conv"
    window: int | None  # sliding window (positions a query may look back, itself included); None = unlimited
    per_token: float  # FLOPs per token of every projection, MLP, router and active expert in the layer
    per_pair: float  # FLOPs per (query, key) pair of the attention core (Q K^T and P V, all query heads)
    conv: tuple[tuple[int, int], ...] = ()  # (channels x in_per_group, kernel) of each depthwise/short convolution
    delta_heads: int = 0  # gated delta rule: value heads, key and value head sizes
    delta_dk: int = 0
    delta_dv: int = 0


@dataclass(frozen=True)
class DecoderShape:
    layers: tuple[LayerShape, ...]
    per_token_outside: float  # projections of the text model outside its layers (e.g. per-layer input projections)
    hidden_size: int

    @property
    def num_layers(self) -> int:
        return len(self.layers)


# ---------------------------------------------------------------- reading the architecture


def decoder_shape(model_or_config: Any) -> DecoderShape:
    """The :class:`DecoderShape` of a model, a transformers config, or a config.json-style dict."""
    config = getattr(model_or_config, "config", model_or_config)
    if isinstance(config, dict):
        from vtwcli.models.loading import config_from_dict

        config = config_from_dict(config)
    text = config.get_text_config(decoder=True)
    return _decoder_shape_cached(json.dumps(text.to_dict(), sort_keys=True, default=str))


@lru_cache(maxsize=32)
def _decoder_shape_cached(text_json: str) -> DecoderShape:
    import torch
    from transformers import AutoConfig, AutoModel

    data = json.loads(text_json)
    model_type = data.pop("model_type")
    text = AutoConfig.for_model(model_type, **data)
    try:
        with torch.device("meta"):
            decoder = AutoModel.from_config(text)
    except (ValueError, KeyError) as err:
        raise UsageError(f"cannot build the {model_type} text decoder to count its FLOPs: {err}") from err
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise UsageError(f"the {model_type} text decoder has no `layers`; its FLOPs cannot be counted")
    n_experts, top_k = _experts(text)
    types = list(getattr(text, "layer_types", None) or [])
    shapes = []
    for i, layer in enumerate(layers):
        kind = types[i] if i < len(types) else "full_attention"
        shapes.append(_layer_shape(text, i, kind, layer, n_experts, top_k))
    outside = 0.0
    for name, module in decoder.named_modules():
        if name.startswith("layers.") or name == "layers":
            continue
        if isinstance(module, torch.nn.Linear):
            outside += 2.0 * module.in_features * module.out_features
    return DecoderShape(tuple(shapes), outside, int(text.hidden_size))


def _experts(text) -> tuple[int | None, int | None]:
    n = None
    for attr in ("num_experts", "n_routed_experts", "num_local_experts"):
        value = getattr(text, attr, None)
        if isinstance(value, int) and value > 0:
            n = value
            break
    k = None
    for attr in ("num_experts_per_tok", "top_k_experts", "moe_topk"):
        value = getattr(text, attr, None)
        if isinstance(value, int) and value > 0:
            k = value
            break
    return (n, k) if n and k else (None, None)


def _layer_shape(text, index: int, kind: str, layer, n_experts, top_k) -> LayerShape:
    import torch

    per_token = 0.0
    conv: list[tuple[int, int]] = []
    for name, module in layer.named_modules():
        share = 1.0
        if n_experts and ".experts." in f".{name}." and any(p.isdigit() for p in name.split(".")):
            share = top_k / n_experts  # an expert kept as its own module: only top_k of them run per token
        if isinstance(module, torch.nn.Linear):
            per_token += share * 2.0 * module.in_features * module.out_features
        elif isinstance(module, torch.nn.Conv1d):
            kernel = int(module.kernel_size[0])
            conv.append((int(module.out_channels) * int(module.in_channels // module.groups), kernel))
        else:
            for param in module.parameters(recurse=False):
                if n_experts and param.dim() == 3 and param.shape[0] == n_experts:
                    per_token += 2.0 * top_k * param[0].numel()  # stacked expert weights: top_k of them per token
                elif n_experts and param.dim() == 2 and tuple(param.shape) == (n_experts, text.hidden_size):
                    per_token += 2.0 * param.numel()  # a router kept as a bare weight: every token is scored
    if kind == "linear_attention":
        return LayerShape(
            "linear_attention", None, per_token, 0.0, tuple(conv),
            delta_heads=int(text.linear_num_value_heads), delta_dk=int(text.linear_key_head_dim),
            delta_dv=int(text.linear_value_head_dim),
        )
    if kind == "conv":
        return LayerShape("conv", None, per_token, 0.0, tuple(conv))
    heads = int(text.num_attention_heads)
    head_dim = _head_dim(text, index)
    qk = int(getattr(text, "qk_head_dim", None) or head_dim)  # MLA: nope + rope parts
    v = int(getattr(text, "v_head_dim", None) or head_dim)
    window = None
    if kind == "sliding_attention":
        window = getattr(text, "sliding_window", None)
    elif not getattr(text, "layer_types", None) and getattr(text, "sliding_window", None) and getattr(
        text, "use_sliding_window", True
    ):
        window = text.sliding_window  # Mistral-style: one window for every layer
    return LayerShape("attention", int(window) if window else None, per_token, 2.0 * heads * (qk + v), tuple(conv))


def _head_dim(text, index: int) -> int:
    per_layer = getattr(text, "per_layer_config", None) or {}
    override = per_layer.get(f"{index:02d}", {}) if isinstance(per_layer, dict) else {}
    value = override.get("head_dim") or getattr(text, "head_dim", None)
    return int(value or text.hidden_size // text.num_attention_heads)


# ---------------------------------------------------------------- counting


def kept_positions(method: str, s: int, n_vis: int, vis_start: int, ratio: float = 0.5) -> list[int]:
    """Original positions kept after withdrawal: ``vtw``/``rand`` drop the vision block, ``fastv``
    drops ``ratio`` of it (spread evenly over the block; the real choice depends on attention)."""
    vision = range(vis_start, vis_start + n_vis)
    if method in ("vtw", "rand"):
        dropped = set(vision)
    elif method == "fastv":
        n_drop = int(round(ratio * n_vis))
        dropped = {vis_start + int(i * n_vis / n_drop) for i in range(n_drop)} if n_drop else set()
    else:
        raise UsageError(f"no FLOPs model for method {method!r} (known: baseline, vtw, fastv, rand)")
    return [p for p in range(s) if p not in dropped]


def attention_pairs(positions: list[int], window: int | None, mode: str = "attended") -> float:
    """(query, key) pairs among ``positions`` (sorted original positions) that a layer computes."""
    n = len(positions)
    if mode == "dense":
        return float(n * n)
    if mode != "attended":
        raise UsageError(f"attention mode must be one of {', '.join(ATTENTION_MODES)}, got {mode!r}")
    if window is None:
        return n * (n + 1) / 2.0
    total, lo = 0, 0
    for hi, p in enumerate(positions):  # keys p' with p - window < p' <= p, among the kept positions
        while positions[lo] <= p - window:
            lo += 1
        total += hi - lo + 1
    return float(total)


def layer_flops(layer: LayerShape, positions: list[int], mode: str = "attended") -> float:
    """FLOPs of one layer run on the tokens at ``positions`` (no cache: a prefill)."""
    n = len(positions)
    flops = n * layer.per_token
    for channels, kernel in layer.conv:  # padded causal convolution: n + kernel - 1 outputs, then cut to n
        flops += 2.0 * (n + kernel - 1) * channels * kernel
    if layer.mixer == "attention":
        flops += layer.per_pair * attention_pairs(positions, layer.window, mode)
    elif layer.mixer == "linear_attention":
        flops += _delta_rule_flops(n, layer.delta_heads, layer.delta_dk, layer.delta_dv)
    return flops


def _delta_rule_flops(n: int, heads: int, dk: int, dv: int, c: int = DELTA_RULE_CHUNK) -> float:
    """Matmuls of the chunked gated delta rule over ``n`` tokens (padded to whole chunks)."""
    chunks = math.ceil(n / c) if n else 0
    per_chunk = 2.0 * c * c * dk * 2 + 2.0 * c * c * dv + 2.0 * c * dk * dv * 3
    return heads * chunks * per_chunk


def exact_prefill_flops(
    model_or_config: Any,
    method: str = "baseline",
    *,
    s: float,
    n_vis: float,
    k: int | None = None,
    ratio: float = 0.5,
    vis_start: int = 0,
    attention: str = "attended",
) -> float:
    """Architecture-exact FLOPs of one prefill of ``s`` tokens, ``n_vis`` of them vision tokens
    starting at position ``vis_start``, with the method's withdrawal at layer K.

    Same methods and K as :func:`vtwcli.bench.flops.prefill_flops`; ``s`` and ``n_vis`` are rounded
    to whole tokens (the bench passes averages).
    """
    shape = decoder_shape(model_or_config)
    s_i, n_i = int(round(s)), int(round(n_vis))
    if s_i <= 0 or n_i < 0 or n_i > s_i:
        raise UsageError(f"FLOPs need 0 <= n_vis <= s and s > 0 (got s={s}, n_vis={n_vis})")
    if not 0 <= vis_start <= s_i - n_i:
        raise UsageError(f"the vision block must lie inside the prompt (vis_start={vis_start}, s={s}, n_vis={n_vis})")
    if attention not in ATTENTION_MODES:
        raise UsageError(f"attention mode must be one of {', '.join(ATTENTION_MODES)}, got {attention!r}")
    full = list(range(s_i))
    if method == "baseline":
        kept, k = full, shape.num_layers
    else:
        if k is None or not 1 <= k <= shape.num_layers:
            raise UsageError(f"K must be in 1..{shape.num_layers} for method {method!r}, got {k!r}")
        if method == "fastv" and not 0.0 <= ratio <= 1.0:
            raise UsageError(f"the FastV ratio must be in 0..1, got {ratio}")
        kept = kept_positions(method, s_i, n_i, vis_start, ratio)
    total = s_i * shape.per_token_outside
    for i, layer in enumerate(shape.layers):
        total += layer_flops(layer, full if i < k else kept, attention)
    return total


def exact_prefill_tflops(model_or_config: Any, method: str = "baseline", **kwargs) -> float:
    return exact_prefill_flops(model_or_config, method, **kwargs) / TERA


__all__ = [
    "ATTENTION_MODES",
    "DecoderShape",
    "LayerShape",
    "attention_pairs",
    "decoder_shape",
    "exact_prefill_flops",
    "exact_prefill_tflops",
    "kept_positions",
    "layer_flops",
]
