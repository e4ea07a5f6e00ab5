"""What layers >= K get as positional input for the tokens they keep: the one place that
decides it.

The default policy is the paper's "Keep": every kept token keeps its original position, so
each withdrawn layer's own per-token inputs (its rotary table, which may differ between layers
- Gemma's local/global rotary, Molmo2's per-layer variants -, and per-layer inputs such as
Gemma 4's) are gathered at the kept rows (:func:`kept_position_inputs`).

"Rearrange" (the paper's Table 6 ablation) renumbers the tokens layers >= K hold: the kept
tokens of a row get positions 0..T-1 in order (padding not counted) and each generated token
the next one, on every rotary axis alike (M-RoPE's three axes get the same number, as text
tokens have). Their rotary table is recomputed from those numbers by the decoder's own
rotary module (:func:`rearranged_position_embeddings`); layers < K are untouched. The mask
code reads original positions from :func:`timeline_positions` under both policies (masks
always count the original timeline: sliding windows, padding).
"""

from __future__ import annotations

import torch

from vtwcli.engine.select import gather_rows

POLICIES = ("keep", "rearrange")


def timeline_positions(index: torch.Tensor | None, past: int, batch: int, length: int, device) -> torch.Tensor:
    """The original timeline index ([B, T] long) of each row a withdrawn layer holds for this
    call: ``past + index`` after a gather, ``past + arange(length)`` otherwise."""
    if index is not None:
        return index.to(device) + past
    return (torch.arange(length, device=device) + past).expand(batch, length)


def kept_position_inputs(value, index: torch.Tensor, length: int, memo: dict):
    """One per-token layer input (a tensor or a tuple of tensors, rows on axis -2) restricted
    to the kept rows ``index`` ([B, T]); anything whose row axis is not this call's ``length``
    passes unchanged. ``memo`` (per call) gathers a tensor shared by several layers once."""
    if isinstance(value, (tuple, list)):
        return type(value)(kept_position_inputs(v, index, length, memo) for v in value)
    if not isinstance(value, torch.Tensor) or value.dim() < 3 or value.shape[-2] != length:
        return value
    key = id(value)
    hit = memo.get(key)
    if hit is not None and hit[0] is value:
        return hit[1]
    out = gather_rows(value, index.to(value.device))
    memo[key] = (value, out)
    return out


def rearranged_positions(valid: torch.Tensor, length: int) -> torch.Tensor:
    """[B, length] positions of this call's rows under "rearrange": each slot's rank among the
    real slots of the withdrawn timeline ``valid`` ([B, S], this call's rows last), from 0.
    Padding slots get their left neighbour's number (they are masked anyway)."""
    return (valid.long().cumsum(1) - 1).clamp_min(0)[:, -length:]


def rotary_module(text_model):
    """The decoder's one rotary module, or None when it has none or several (per-layer variants)."""
    found = [m for m in text_model.modules() if type(m).__name__.endswith("RotaryEmbedding")]
    rotary = getattr(text_model, "rotary_emb", None)
    return rotary if rotary is not None and found == [rotary] else None


def rearranged_position_embeddings(rotary, hidden: torch.Tensor, valid: torch.Tensor, memo: dict, mrope: bool = False):
    """The ``(cos, sin)`` table layers >= K get under "rearrange" for ``hidden``'s rows (computed
    once per call and shared by the layers). ``mrope``: the rotary module takes one position per
    axis ([3, B, T]; older transformers accept nothing else), every axis given the same number."""
    hit = memo.get("rearranged")
    if hit is not None and hit[0] == tuple(hidden.shape[:2]):
        return hit[1]
    pos = rearranged_positions(valid.to(hidden.device), hidden.shape[1])
    if mrope:
        pos = pos[None].expand(3, -1, -1)
    table = rotary(hidden, pos)
    memo["rearranged"] = (tuple(hidden.shape[:2]), table)
    return table
