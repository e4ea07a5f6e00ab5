"""The FLOPs convention against the paper's Table 2 (numbers copied from the paper, not computed)."""

from __future__ import annotations

import pytest

from vtwcli.bench.flops import layer_flops, prefill_tflops
from vtwcli.errors import UsageError

# model, hidden, layers, implied average prompt length (MME), vision tokens, K,
# paper baseline TFLOPs, paper VTW TFLOPs (Table 2 of the VTW paper)
TABLE2 = [
    ("llava-1.5-7b", 4096, 32, 641.4, 576, 16, 8.48, 4.68),
    ("llava-1.5-13b", 5120, 40, 642.2, 576, 20, 16.50, 9.10),
    ("llava-next-7b", 4096, 32, 2057.5, 1991.7, 16, 28.73, 14.80),
]


@pytest.mark.parametrize("name,h,n_layers,s,n_vis,k,paper_base,paper_vtw", TABLE2)
def test_table2_baseline_and_vtw_within_half_percent(name, h, n_layers, s, n_vis, k, paper_base, paper_vtw):
    base = prefill_tflops("baseline", s=s, n_vis=n_vis, hidden_size=h, num_layers=n_layers)
    vtw = prefill_tflops("vtw", s=s, n_vis=n_vis, hidden_size=h, num_layers=n_layers, k=k)
    assert base == pytest.approx(paper_base, rel=0.005), name
    assert vtw == pytest.approx(paper_vtw, rel=0.005), name


@pytest.mark.parametrize(
    "h,n_layers,s,n_vis,paper_fastv",
    [(5120, 40, 642.2, 576, 9.56), (4096, 32, 2057.5, 1991.7, 15.67)],
)
def test_table2_fastv_k3_r05_for_13b_and_next(h, n_layers, s, n_vis, paper_fastv):
    # FastV's own lmms-eval script runs K=3, R=0.5; that matches the 13B and NeXT columns.
    got = prefill_tflops("fastv", s=s, n_vis=n_vis, hidden_size=h, num_layers=n_layers, k=3, ratio=0.5)
    assert got == pytest.approx(paper_fastv, rel=0.005)


def test_fastv_7b_is_not_matched_by_any_single_k():
    # The paper's 4.91 for LLaVA-1.5-7B lies between K=2 and K=3: bench reports the K it ran.
    k2 = prefill_tflops("fastv", s=641.4, n_vis=576, hidden_size=4096, num_layers=32, k=2, ratio=0.5)
    k3 = prefill_tflops("fastv", s=641.4, n_vis=576, hidden_size=4096, num_layers=32, k=3, ratio=0.5)
    assert k2 == pytest.approx(4.86, abs=0.01) and k3 == pytest.approx(4.98, abs=0.01)
    assert k2 < 4.91 < k3


def test_layer_cost_matches_eq1_by_hand():
    # Eq. 1: 2 s^2 h + 12 s h^2 multiply-adds; s=10, h=4 -> 800 + 1920 = 2720 MACs = 5440 FLOPs.
    assert layer_flops(10, 4) == 5440


def test_k_equal_to_n_is_the_baseline_and_rand_costs_what_vtw_costs():
    kw = dict(s=700, n_vis=600, hidden_size=256, num_layers=8)
    assert prefill_tflops("vtw", k=8, **kw) == prefill_tflops("baseline", **kw)
    assert prefill_tflops("rand", k=3, **kw) == prefill_tflops("vtw", k=3, **kw)
    assert prefill_tflops("fastv", k=3, ratio=1.0, **kw) == prefill_tflops("vtw", k=3, **kw)


@pytest.mark.parametrize("k", [0, 9, None])
def test_k_out_of_range_is_refused(k):
    with pytest.raises(UsageError, match="K must be in 1..8"):
        prefill_tflops("vtw", s=700, n_vis=600, hidden_size=256, num_layers=8, k=k)


@pytest.mark.parametrize("name,h,n_layers,s,n_vis,k,paper_base,paper_vtw", TABLE2)
def test_calibrate_reports_the_same_ratio_as_bench(name, h, n_layers, s, n_vis, k, paper_base, paper_vtw):
    """calibrate's FLOPs ratio (the profile's flops_ratio) is the paper's VTW/baseline column ratio."""
    from vtwcli.calibrate.api import vtw_flops_ratio

    assert vtw_flops_ratio(k, n_layers, s, n_vis, h) == pytest.approx(paper_vtw / paper_base, rel=0.01), name


def test_one_formula_for_the_whole_project(monkeypatch):
    """A change to the formula in vtwcli.bench.flops reaches calibrate's ratio and sweep cost."""
    from vtwcli.bench import flops
    from vtwcli.calibrate import api

    def doubled_text(s, h):  # a deliberately different layer cost: 3 for a full layer, 1 for a short one
        return 1.0 if s < 700 else 3.0

    before = api.vtw_flops_ratio(4, 8, 700, 600, 256)
    monkeypatch.setattr(flops, "layer_flops", doubled_text)
    assert api.vtw_flops_ratio(4, 8, 700, 600, 256) == pytest.approx((4 * 3 + 4 * 1) / (8 * 3)) != before
    fast, slow = api.sweep_cost_formula([2, 8], 8, 700, 100, 256)
    assert fast == pytest.approx((8 * 3 + 6 * 1) / (8 * 3))
