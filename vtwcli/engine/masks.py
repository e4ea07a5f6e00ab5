"""Masks for the layers that run after withdrawal, built by transformers' own mask code.

One rule for every layer >= K: the model's own mask restricted to the kept tokens, with every
limit counted on the *original* timeline. The kept rows are packed (and re-padded on the left),
so a layer's keys are the kept tokens of every call so far; :func:`withdrawn_mask` gets, per key
slot, its original timeline index (``pos``), whether it is real (``valid``) and the model's
bidirectional block id (``blocks``, -1 = none), and hands transformers' ``create_causal_mask``
mask functions that read them:

- causal: packing keeps the order, so causal on slots is causal on original positions;
- sliding window: ``pos[q] - pos[kv] < window`` (the window counts original positions);
- bidirectional blocks (Gemma 3 image blocks, PaliGemma's prefix): slots of the same block;
- recurrent layers (linear attention, short convolutions) take a 2D padding mask of this
  call's kept rows (None when nothing is padding), as transformers' own
  ``create_recurrent_attention_mask`` does;
- FastV's masking variant (``fastv-mask``) keeps every row: ``keys`` marks the slots other
  queries may attend to (a pruned slot is still seen by its own query, so no row of the
  mask is ever empty and nothing becomes NaN).

transformers renamed ``create_causal_mask``'s cache argument from ``past_key_values`` (up to
5.23) to ``cache`` (5.24); this is the one place that knows. Always an explicit 2D validity mask
and ``position_ids=None``: gapped positions would otherwise read as packed sequences.
"""

from __future__ import annotations

import inspect
from functools import cache as _memo

import torch

FULL, SLIDING, CHUNKED, RECURRENT = "full", "sliding", "chunked", "recurrent"
_RECURRENT_TYPES = ("linear_attention", "conv", "mamba", "recurrent")


def layer_kind(layer_type: str) -> str | None:
    """How the engine treats a layer type named in a config's ``layer_types``."""
    if layer_type == "full_attention":
        return FULL
    if layer_type == "sliding_attention":
        return SLIDING
    if layer_type == "chunked_attention":
        return CHUNKED
    if layer_type in _RECURRENT_TYPES:
        return RECURRENT
    return None


@_memo
def _cache_kwarg(fn) -> str:
    params = inspect.signature(fn).parameters
    return "cache" if "cache" in params else "past_key_values"


def causal_mask(config, hidden, valid_2d, kv_cache=None, layer_idx: int | None = None, sliding: bool = False):
    """The plain mask a decoder layer expects (eager, sdpa or flash-attention-2 form) for
    ``hidden`` attending over what ``kv_cache`` holds at ``layer_idx`` plus this call's rows."""
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


def _kv_extent(kv_cache, query_length: int, layer_idx: int, width: int) -> int:
    """How many key slots (offset + length) a mask for ``layer_idx`` may index."""
    if kv_cache is None:
        return width
    try:
        kv_length, kv_offset = kv_cache.get_mask_sizes(query_length, layer_idx)
    except (AttributeError, IndexError, TypeError, ValueError):
        return width
    return max(width, int(kv_length) + int(kv_offset))


def _pad_to(x: torch.Tensor, width: int, value) -> torch.Tensor:
    if x.shape[1] >= width:
        return x
    return torch.cat([x, x.new_full((x.shape[0], width - x.shape[1]), value)], 1)


def withdrawn_mask(
    config,
    kind: str,
    hidden: torch.Tensor,
    valid: torch.Tensor,
    pos: torch.Tensor,
    blocks: torch.Tensor | None,
    kv_cache,
    layer_idx: int,
    window: int | None = None,
    window_over_blocks: bool = True,
    keys: torch.Tensor | None = None,
):
    """The attention mask of a layer >= K (kind ``full`` or ``sliding``) for this call's
    ``hidden`` rows ([B, T, .]). ``valid``/``pos``/``blocks``: [B, S] over the key slots of the
    withdrawn timeline (every call so far, this one last). ``keys`` ([B, S] bool, optional):
    the slots any query may attend to; a slot outside it is attended to by its own query only."""
    from transformers.masking_utils import create_causal_mask

    width = _kv_extent(kv_cache, hidden.shape[1], layer_idx, valid.shape[1])
    device = hidden.device
    pos = _pad_to(pos.to(device), width, torch.iinfo(torch.long).max // 4)
    valid = valid.to(device)
    or_fn = and_fn = None
    if blocks is not None and bool((blocks >= 0).any()):
        blocks = _pad_to(blocks.to(device), width, -1)

        def or_fn(batch_idx, head_idx, q_idx, kv_idx):
            group = blocks[batch_idx, q_idx]
            return (group == blocks[batch_idx, kv_idx]) & (group >= 0)

    if kind == SLIDING:
        if window is None:
            raise ValueError("a sliding-window layer needs the config's sliding_window")

        def in_window(batch_idx, head_idx, q_idx, kv_idx):
            return pos[batch_idx, q_idx] - pos[batch_idx, kv_idx] < window

        if or_fn is not None and not window_over_blocks:
            block_fn = or_fn

            def and_fn(batch_idx, head_idx, q_idx, kv_idx):
                return in_window(batch_idx, head_idx, q_idx, kv_idx) | block_fn(batch_idx, head_idx, q_idx, kv_idx)
        else:
            and_fn = in_window
    elif kind != FULL:
        raise ValueError(f"no attention mask for a {kind} layer")
    kwargs = {
        "config": config,
        "inputs_embeds": hidden,
        "attention_mask": valid,
        _cache_kwarg(create_causal_mask): kv_cache,
        "position_ids": None,
        "layer_idx": layer_idx,
    }
    if or_fn is not None:
        kwargs["or_mask_function"] = or_fn
    if and_fn is not None:
        kwargs["and_mask_function"] = and_fn
    mask = create_causal_mask(**kwargs)
    if keys is not None:
        mask = _hide_keys(mask, keys, hidden, kv_cache, layer_idx, valid.shape[1])
    return mask


def _hide_keys(mask, keys: torch.Tensor, hidden: torch.Tensor, kv_cache, layer_idx: int, total: int):
    """``mask`` (an eager or sdpa mask of this call's rows, None for sdpa's plain causal case)
    with every slot outside ``keys`` ([B, S] over the timeline) hidden from every query but
    its own. Applied to the finished mask rather than as one more mask function, which would
    send transformers down its slow (vmap) path for every layer kind at every decode step."""
    q = hidden.shape[1]
    device = hidden.device
    kv_length, kv_offset = total, 0
    if kv_cache is not None:
        kv_length, kv_offset = (int(x) for x in kv_cache.get_mask_sizes(q, layer_idx))
    q_abs = torch.arange(total - q, total, device=device)
    kv_abs = torch.arange(kv_offset, kv_offset + kv_length, device=device)
    keys = _pad_to(keys.to(device), kv_offset + kv_length, False)[:, kv_offset:]
    seen = keys[:, None, None, :] | (kv_abs[None, None, None, :] == q_abs[None, None, :, None])  # [B, 1, q, kv]
    if mask is None:  # sdpa left it to is_causal: no padding, causal only
        return (kv_abs[None, :] <= q_abs[:, None])[None, None] & seen
    if mask.dtype == torch.bool:
        return mask & seen
    return mask.masked_fill(~seen, torch.finfo(mask.dtype).min)


def recurrent_mask(valid_call: torch.Tensor, like: torch.Tensor | None):
    """The 2D padding mask a linear-attention or convolution layer gets for this call's kept
    rows: None when no row is padding or for a one-token step (nothing to zero)."""
    if valid_call.shape[1] == 1 or bool(valid_call.all()):
        return None
    dtype = like.dtype if isinstance(like, torch.Tensor) else torch.long
    return valid_call.to(dtype)
