"""What layers >= K get as positional input for the tokens they keep: the one place that
decides it.

The engine's policy is the paper's "Keep": every kept token keeps its original position, so
each withdrawn layer's own per-token inputs (its rotary table, which may differ between layers
- Gemma's local/global rotary, Molmo2's per-layer variants -, and per-layer inputs such as
Gemma 4's) are gathered at the kept rows. A "rearrange" policy (renumber the kept tokens
0..T-1) would change :func:`kept_position_inputs` only; the mask code reads original positions
from :func:`timeline_positions`, which must stay as it is (masks always count the original
timeline: sliding windows, padding).
"""

from __future__ import annotations

import torch

from vtwcli.engine.select import gather_rows

POLICY = "keep"


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
