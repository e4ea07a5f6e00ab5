"""FastV's kept vision count: rounded like FastV's own in-place code, not floored."""

from __future__ import annotations

import torch

from vtwcli.engine.select import fastv_keep_count, keep_fastv


def test_counts_where_rounding_and_flooring_differ():
    # FastV keeps topk(round(n * (1 - R))); n = 3 (mod 4) at R = 0.5 is where floor would differ
    assert [fastv_keep_count(n, 0.5) for n in (3, 7, 11, 575)] == [2, 4, 6, 288]
    # halves go to the even neighbour, as Python's round does in FastV's code
    assert [fastv_keep_count(n, 0.5) for n in (1, 5, 9, 577)] == [0, 2, 4, 288]
    assert fastv_keep_count(576, 0.5) == 288 and fastv_keep_count(10, 0.75) == 2 and fastv_keep_count(10, 0.7) == 3
    assert fastv_keep_count(7, 0.0) == 7 and fastv_keep_count(7, 1.0) == 0


def test_seven_vision_tokens_keep_the_top_four():
    # positions: 0 text, 1..7 vision, 8..9 text; scores rank vision positions 6, 2, 7, 4 highest
    valid = torch.ones(1, 10, dtype=torch.bool)
    vision = torch.zeros(1, 10, dtype=torch.bool)
    vision[0, 1:8] = True
    scores = torch.tensor([[0.0, 0.1, 0.8, 0.2, 0.5, 0.05, 0.9, 0.6, 0.0, 0.0]])
    keep = keep_fastv(valid, vision, scores, 0.5)
    assert keep[0].nonzero().flatten().tolist() == [0, 2, 4, 6, 7, 8, 9]
