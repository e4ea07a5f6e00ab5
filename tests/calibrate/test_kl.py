"""The KL math against values worked out by hand (not by the code under test)."""

from __future__ import annotations

import math

import pytest
import torch

from vtwcli.calibrate.kl import choose_k, kl_from_logits, summarize, withdrawal_kl
from vtwcli.errors import UsageError


def _logits(probs):
    # log-probabilities plus an arbitrary shift: softmax must not care about the shift
    return torch.tensor([math.log(p) + 3.7 for p in probs], dtype=torch.float64)


def test_two_outcome_by_hand():
    # P = (1/2, 1/2), Q = (1/4, 3/4)
    # KL(P||Q) = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3) = 0.1438410362...
    # KL(Q||P) = 1/4 ln(1/2) + 3/4 ln(3/2)            = 0.1308120360...
    p, q = _logits([0.5, 0.5]), _logits([0.25, 0.75])
    assert float(kl_from_logits(p, q)) == pytest.approx(0.1438410362, abs=1e-9)
    assert float(kl_from_logits(q, p)) == pytest.approx(0.1308120360, abs=1e-9)


def test_three_outcome_by_hand():
    # P = (.7, .2, .1), Q = (.2, .5, .3): .7 ln 3.5 + .2 ln .4 + .1 ln(1/3) = 0.5838147027
    p, q = _logits([0.7, 0.2, 0.1]), _logits([0.2, 0.5, 0.3])
    assert float(kl_from_logits(p, q)) == pytest.approx(0.5838147027, abs=1e-9)


def test_direction_picks_the_withdrawn_distribution_first_by_default():
    withdrawn, full = _logits([0.5, 0.5]), _logits([0.25, 0.75])
    assert float(withdrawal_kl(withdrawn, full)) == pytest.approx(0.1438410362, abs=1e-9)
    assert float(withdrawal_kl(withdrawn, full, "withdrawn||full")) == pytest.approx(0.1438410362, abs=1e-9)
    assert float(withdrawal_kl(withdrawn, full, "full||withdrawn")) == pytest.approx(0.1308120360, abs=1e-9)
    with pytest.raises(UsageError, match="--direction"):
        withdrawal_kl(withdrawn, full, "p||q")


def test_rows_are_independent_and_identical_logits_give_zero():
    a = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    b = torch.tensor([[1.0, 2.0, 3.0], [math.log(0.2), math.log(0.5), math.log(0.3)]], dtype=torch.float64)
    kl = kl_from_logits(a, b)
    assert kl.shape == (2,)
    assert float(kl[0]) == 0.0
    # uniform vs (.2,.5,.3): 1/3 [ln(1/(3*.2)) + ln(1/(3*.5)) + ln(1/(3*.3))] = 0.0702403...
    expected = (math.log(1 / 0.6) + math.log(1 / 1.5) + math.log(1 / 0.9)) / 3
    assert float(kl[1]) == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(0.0702403, abs=1e-6)


def test_near_one_hot_half_precision_is_finite():
    p = torch.tensor([40.0, -40.0, -40.0], dtype=torch.float16)
    q = torch.tensor([-40.0, 40.0, -40.0], dtype=torch.float16)
    kl = float(kl_from_logits(p, q))
    assert math.isfinite(kl) and kl == pytest.approx(80.0, rel=1e-3)


def test_summarize_spread():
    point = summarize(7, [0.1, 0.3, 0.2, 0.4])
    assert point.k == 7
    assert point.mean == pytest.approx(0.25)
    assert (point.min, point.max) == (0.1, 0.4)
    assert point.std == pytest.approx(math.sqrt(0.0125))  # population std of the four values


def test_choose_k_first_strictly_below_eta():
    curve = {5: 0.2, 6: 0.003, 7: 0.001, 8: 0.004, 9: 0.0005, 10: 0.0}
    assert choose_k(curve, 0.003, 10) == (7, True)  # 0.003 is not below 0.003; later rises do not matter
    assert choose_k(curve, 0.01, 10) == (6, True)


def test_choose_k_none_below_eta_falls_back_to_n():
    # K = N (KL 0 by definition) is the fallback, not a candidate
    assert choose_k({5: 0.2, 6: 0.1, 8: 0.0}, 0.003, 8) == (8, False)
