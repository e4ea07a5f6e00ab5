"""Paired per-sample ratios and their bootstrap interval, against hand values and a coverage check."""

from __future__ import annotations

import math
import random
import statistics
from types import SimpleNamespace

import pytest

from vtwcli.bench.paired import bootstrap_interval, compare, paired_block, pairs_to_compare, ratios


def test_ratios_pair_samples_and_skip_missing():
    assert ratios([1.0, 2.0, None, 3.0], [2.0, 4.0, 1.0, None]) == [0.5, 0.5]
    assert ratios([1.0], [0.0]) == []


def test_interval_of_constant_ratios_is_that_constant():
    assert bootstrap_interval([0.7] * 9) == (0.7, 0.7)
    assert bootstrap_interval([0.7]) is None


def test_interval_is_seeded_and_contains_the_median():
    xs = [0.5, 0.55, 0.6, 0.52, 0.58, 0.7, 0.49, 0.61]
    a, b = bootstrap_interval(xs, seed=3), bootstrap_interval(xs, seed=3)
    assert a == b
    assert a[0] <= statistics.median(xs) <= a[1]
    assert min(xs) <= a[0] < a[1] <= max(xs)


def test_ninety_five_percent_interval_covers_the_true_median_about_95_percent_of_the_time():
    # ratios drawn from a log-normal with true median 0.6; 200 experiments of 30 samples each
    rng = random.Random(1)
    covered = 0
    trials = 200
    for t in range(trials):
        xs = [0.6 * math.exp(rng.gauss(0, 0.2)) for _ in range(30)]
        lo, hi = bootstrap_interval(xs, seed=t, resamples=500)
        covered += lo <= 0.6 <= hi
    assert 0.88 <= covered / trials <= 0.995, covered


def test_verdicts_follow_the_interval():
    assert compare([0.5, 0.6, 0.55, 0.52])["verdict"] == "faster"
    assert compare([1.5, 1.6, 1.55, 1.52])["verdict"] == "slower"
    assert compare([0.9, 1.1, 0.95, 1.05, 1.0])["verdict"] == "no difference shown"
    assert compare([0.5])["verdict"] == "too few samples" and compare([])["median"] is None


def test_which_pairs_are_compared():
    names = {"baseline": "baseline", "fastv": "fastv", "vtw": "vtw", "rand": "rand"}
    assert pairs_to_compare(list(names), names) == [
        ("fastv", "baseline"), ("vtw", "baseline"), ("rand", "baseline"), ("vtw", "fastv"), ("rand", "fastv")]
    assert pairs_to_compare(["vtw"], {"vtw": "vtw"}) == []
    # FastV's masking implementation is a FastV row too: VTW is compared with both
    names = {"baseline": "baseline", "fastv": "fastv", "fastv-mask": "fastv-mask", "vtw": "vtw"}
    assert pairs_to_compare(list(names), names) == [
        ("fastv", "baseline"), ("fastv-mask", "baseline"), ("vtw", "baseline"), ("vtw", "fastv"), ("vtw", "fastv-mask")]


def _run(prefill, decode, total, tokens):
    return SimpleNamespace(prefill_s=prefill, decode_s_per_token=decode, total_s=total, token_ids=[0] * tokens)


def test_block_by_hand_with_unequal_reply_lengths():
    # VTW answers in 2 tokens where the baseline needs 4: per sample it is 0.5x end to end,
    # but per generated token it is as fast (1.0x)
    outcomes = {
        "baseline": [_run(0.2, 0.1, 0.4, 4), _run(0.2, 0.1, 0.8, 4)],
        "vtw": [_run(0.1, 0.1, 0.2, 2), _run(0.1, 0.1, 0.4, 2)],
    }
    block = paired_block(outcomes, {"baseline": "baseline", "vtw": "vtw"})
    got = block["vtw/baseline"]
    assert got["prefill"]["median"] == pytest.approx(0.5) and got["prefill"]["n"] == 2
    assert got["e2e"]["median"] == pytest.approx(0.5)
    assert got["e2e_per_token"]["median"] == pytest.approx(1.0)
    assert got["decode_per_token"]["median"] == pytest.approx(1.0)
    assert got["decode_per_token"]["verdict"] == "no difference shown"
