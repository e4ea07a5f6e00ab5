"""Which tokens layers >= K keep, and how kept rows are packed (pure tensor functions)."""

from __future__ import annotations

import torch


def keep_vtw(valid: torch.Tensor, vision: torch.Tensor) -> torch.Tensor:
    """The paper's rule: every real (non-padding) text token; no vision token."""
    keep = valid & ~vision
    keep[:, -1] = True
    return keep


def fastv_keep_count(n_vision: int, ratio: float) -> int:
    """FastV keeps the top (1 - R) share of a row's vision tokens, rounded as FastV's own
    in-place code rounds (Python's ``round``: to the nearest integer, halves to the even one),
    so 7 vision tokens at R = 0.5 keep 4, not 3."""
    return int(round(n_vision * (1.0 - ratio)))


def keep_fastv(valid: torch.Tensor, vision: torch.Tensor, scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Text tokens plus, per row, the vision tokens with the highest ``scores`` (the last
    token's attention at layer K-1)."""
    keep = keep_vtw(valid, vision)
    real_vision = vision & valid
    for b in range(keep.shape[0]):
        pos = real_vision[b].nonzero(as_tuple=True)[0]
        n = fastv_keep_count(pos.numel(), ratio)
        if n > 0:
            top = scores[b, pos].float().topk(n).indices
            keep[b, pos[top]] = True
    return keep


def keep_rand(valid: torch.Tensor, vision: torch.Tensor, seed: int) -> torch.Tensor:
    """The paper's ablation: drop as many randomly chosen prompt tokens as the row has vision
    tokens (any real token but the last may be chosen). Seeded, drawn on the CPU so the
    choice does not depend on the device. Each row draws from its own generator seeded with
    ``seed``, over its real tokens counted from its first, so a prompt drops the same tokens
    alone, in any batch and under any left padding."""
    keep = valid.clone()
    n_vision = (vision & valid).sum(1).tolist()
    for b, n in enumerate(n_vision):
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        candidates = valid[b, :-1].nonzero(as_tuple=True)[0].cpu()
        n = min(n, candidates.numel())
        if n > 0:
            drop = candidates[torch.randperm(candidates.numel(), generator=gen)[:n]]
            keep[b, drop.to(keep.device)] = False
    keep[:, -1] = True
    return keep


def right_aligned_index(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack each row's kept positions to the right of a [B, T] index (T = most kept).

    Returns ``(index, filled)``: ``index[b, t]`` is the original position held by slot t
    (0 for empty slots on the left, which ``filled`` marks False). Rows keep their order,
    so original positions stay increasing; left re-padding matches generate()'s own layout.
    """
    batch, _ = keep.shape
    counts = keep.sum(1)
    width = int(counts.max())
    rank_from_right = keep.flip(1).cumsum(1).flip(1)
    rows, cols = keep.nonzero(as_tuple=True)
    slots = width - rank_from_right[rows, cols]
    index = torch.zeros(batch, width, dtype=torch.long, device=keep.device)
    filled = torch.zeros(batch, width, dtype=torch.bool, device=keep.device)
    index[rows, slots] = cols
    filled[rows, slots] = True
    return index, filled


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gather along axis -2 with a [B, T] index; leading axes before the batch one (Qwen's
    [3, B, L, D] rotary tables in older releases) and a broadcast batch of 1 are handled."""
    batch, width = index.shape
    lead = x.shape[:-3]
    if x.shape[-3] != batch:
        x = x.expand(*lead, batch, *x.shape[-2:])
    idx = index.view(*([1] * len(lead)), batch, width, 1).expand(*lead, batch, width, x.shape[-1])
    return x.gather(-2, idx)
