"""`rand` drops the same tokens of a prompt alone, in a batch and under left padding (so a
batched benchmark answers like an unbatched one)."""

from __future__ import annotations

import torch

from vtwcli.engine.select import keep_rand


def _row(length: int, vision: range, width: int):
    valid = torch.zeros(width, dtype=torch.bool)
    valid[width - length:] = True  # left padding
    vis = torch.zeros(width, dtype=torch.bool)
    for p in vision:
        vis[width - length + p] = True
    return valid, vis


def test_rand_choice_of_a_row_does_not_depend_on_its_batch():
    a_valid, a_vis = _row(12, range(2, 8), 12)
    alone = keep_rand(a_valid[None], a_vis[None], seed=3)[0]
    assert int((~alone).sum()) == 6  # as many dropped as vision tokens

    b_valid, b_vis = _row(16, range(1, 10), 16)
    a_pad_valid, a_pad_vis = _row(12, range(2, 8), 16)
    batch = keep_rand(torch.stack([b_valid, a_pad_valid]), torch.stack([b_vis, a_pad_vis]), seed=3)
    assert torch.equal(batch[1, 4:], alone)  # second row, after 4 padding positions
    assert not bool(batch[1, :4].any())  # padding is never kept
    first_alone = keep_rand(b_valid[None], b_vis[None], seed=3)[0]
    assert torch.equal(batch[0], first_alone)
    # and the seed still matters
    assert not torch.equal(keep_rand(a_valid[None], a_vis[None], seed=4)[0], alone)
