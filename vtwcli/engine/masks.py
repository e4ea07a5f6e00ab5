"""Attention masks for rows that skip the vision tokens, built by transformers' own mask code.

transformers renamed ``create_causal_mask``'s cache argument from ``past_key_values`` (up
to 5.23) to ``cache`` (5.24); this is the one place that knows. Always an explicit 2D
validity mask and ``position_ids=None``: gapped positions would otherwise read as packed
sequences and make the mask block-diagonal.
"""

from __future__ import annotations

import inspect
from functools import cache as _memo


@_memo
def _cache_kwarg(fn) -> str:
    params = inspect.signature(fn).parameters
    return "cache" if "cache" in params else "past_key_values"


def causal_mask(config, hidden, valid_2d, kv_cache=None, layer_idx: int | None = None, sliding: bool = False):
    """The mask a decoder layer expects (eager, sdpa or flash-attention-2 form) for ``hidden``
    attending over what ``kv_cache`` holds at ``layer_idx`` plus this call's rows."""
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    make = create_sliding_window_causal_mask if sliding else create_causal_mask
    kwargs = {
        "config": config,
        "inputs_embeds": hidden,
        "attention_mask": valid_2d,
        _cache_kwarg(make): kv_cache,
        "position_ids": None,
    }
    if layer_idx is not None:
        kwargs["layer_idx"] = layer_idx
    return make(**kwargs)
