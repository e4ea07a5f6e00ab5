"""The one-pass sweep against the paper's loop (one engine forward per K), on every architecture."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny import TINY_ARCHS, build_tiny_model, tiny_inputs  # noqa: E402

from vtwcli.calibrate.sweep import fast_sweep, gather_rows, slow_sweep, text_index  # noqa: E402

N_LAYERS = 4
KS = list(range(1, N_LAYERS + 1))


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _assert_same_curve(fast, slow):
    assert set(fast) == set(slow)
    for k in fast:
        assert fast[k] == pytest.approx(slow[k], abs=1e-5, rel=1e-4), f"K={k}"


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_fast_equals_paper_loop_on_a_padded_batch(arch):
    # two rows with different text lengths and vision counts: left padding and re-padding both matter
    model = build_tiny_model(arch, attn="sdpa", num_layers=N_LAYERS)
    inputs = tiny_inputs(model, rows=(0, 1))
    fast = fast_sweep(model, inputs, KS)
    slow = slow_sweep(model, inputs, KS)
    _assert_same_curve(fast, slow)
    # non-vacuous: withdrawing early moves the distribution, K = N does not
    assert min(fast[1]) > 1e-3
    assert fast[N_LAYERS] == [0.0, 0.0] and slow[N_LAYERS] == pytest.approx([0.0, 0.0], abs=1e-9)


@pytest.mark.parametrize("arch", ["llava", "qwen2_vl"])
def test_fast_equals_paper_loop_eager_and_generated_tokens(arch):
    model = build_tiny_model(arch, attn="eager", num_layers=N_LAYERS)
    inputs = tiny_inputs(model, rows=(0, 1))
    fast = fast_sweep(model, inputs, KS, tokens=3, direction="full||withdrawn")
    slow = slow_sweep(model, inputs, KS, tokens=3, direction="full||withdrawn")
    _assert_same_curve(fast, slow)
    assert min(fast[1]) > 1e-3
    # averaging over 3 answer tokens is a different figure from the last prompt token alone
    one = fast_sweep(model, inputs, KS, tokens=1, direction="full||withdrawn")
    assert one[1] != pytest.approx(fast[1], rel=1e-3)


def test_batch_rows_equal_single_rows():
    model = build_tiny_model("llava_next", attn="sdpa", num_layers=N_LAYERS)
    both = fast_sweep(model, tiny_inputs(model, rows=(0, 1)), KS)
    first = fast_sweep(model, tiny_inputs(model, rows=(0,)), KS)
    second = fast_sweep(model, tiny_inputs(model, rows=(1,)), KS)
    for k in KS:
        assert both[k] == pytest.approx([first[k][0], second[k][0]], abs=1e-5, rel=1e-4)


def test_a_subset_of_candidates_gives_the_same_values():
    model = build_tiny_model("internvl", attn="sdpa", num_layers=N_LAYERS)
    inputs = tiny_inputs(model, rows=(0,))
    full = fast_sweep(model, inputs, KS)
    part = fast_sweep(model, inputs, [3])
    assert part[3] == pytest.approx(full[3], abs=1e-6)


def test_text_index_is_right_aligned_and_skips_vision_and_padding():
    ids = torch.tensor([[0, 0, 5, 9, 9, 6, 7], [4, 9, 9, 9, 5, 6, 7]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])
    index, valid = text_index(ids, mask, [9])
    assert index.tolist() == [[2, 2, 5, 6], [0, 4, 5, 6]]
    assert valid.tolist() == [[False, True, True, True], [True, True, True, True]]
    x = torch.arange(2 * 7 * 2, dtype=torch.float32).view(2, 7, 2)
    rows = gather_rows(x, index)
    assert rows[1, 1].tolist() == x[1, 4].tolist() and rows[0, 3].tolist() == x[0, 6].tolist()
    # a rotary table shared by the batch ([1, L, D]) and one with a leading axis ([3, B, L, D])
    shared = torch.randn(1, 7, 3)
    assert gather_rows(shared, index)[1, 1].tolist() == shared[0, 4].tolist()
    lead = torch.randn(3, 2, 7, 3)
    assert gather_rows(lead, index)[2, 0, 2].tolist() == lead[2, 0, 5].tolist()
