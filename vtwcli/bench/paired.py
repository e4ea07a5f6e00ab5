"""Paired per-sample ratios with a seeded bootstrap interval.

Every method runs on the same samples, interleaved, so the fair comparison of two methods is
sample by sample: ``ratio_i = time_A(sample i) / time_B(sample i)``. Its median over samples,
with a 95% percentile-bootstrap confidence interval (samples drawn with replacement, the
median recomputed each time), says how much faster A is and how sure that is. A is called
faster only when the whole interval lies below 1, slower only when it lies above 1.

The resampling uses its own seeded ``random.Random``: the same outcomes give the same
interval on every machine.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from typing import Any

BOOTSTRAP_RESAMPLES = 2000
LEVEL = 0.95

# what is compared: name -> seconds of one run (None when the run has no such time)
MEASURES: dict[str, Callable[[Any], float | None]] = {
    "prefill": lambda o: o.prefill_s,
    "decode_per_token": lambda o: o.decode_s_per_token,
    "e2e": lambda o: o.total_s,
    "e2e_per_token": lambda o: (o.total_s / len(o.token_ids)) if o.total_s is not None and o.token_ids else None,
}


def ratios(a: Sequence[float | None], b: Sequence[float | None]) -> list[float]:
    """Per-sample ``a_i / b_i`` over the samples where both were measured (and ``b_i > 0``)."""
    return [x / y for x, y in zip(a, b, strict=True) if x is not None and y is not None and y > 0]


def _percentile(sorted_xs: Sequence[float], q: float) -> float:
    pos = q * (len(sorted_xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def bootstrap_interval(
    values: Sequence[float],
    *,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = LEVEL,
    stat: Callable[[Sequence[float]], float] = statistics.median,
) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of ``stat`` (default the median); None under two values."""
    xs = list(values)
    if len(xs) < 2:
        return None
    rng = random.Random(seed)
    n = len(xs)
    draws = sorted(stat([xs[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples))
    tail = (1.0 - level) / 2.0
    return _percentile(draws, tail), _percentile(draws, 1.0 - tail)


def compare(values: Sequence[float], *, seed: int = 0) -> dict[str, Any]:
    """Median ratio, its interval, and the verdict the interval supports."""
    if not values:
        return {"n": 0, "median": None, "ci95": None, "verdict": "not measured"}
    ci = bootstrap_interval(values, seed=seed)
    if ci is None:
        verdict = "too few samples"
    elif ci[1] < 1.0:
        verdict = "faster"
    elif ci[0] > 1.0:
        verdict = "slower"
    else:
        verdict = "no difference shown"
    return {"n": len(values), "median": statistics.median(values), "ci95": list(ci) if ci else None, "verdict": verdict}


def pairs_to_compare(keys: Sequence[str], names: dict[str, str]) -> list[tuple[str, str]]:
    """Which rows are compared: every row against the baseline, and each withdrawing row
    (VTW, rand) against each FastV row (in place and masking). ``names`` maps a row key to its
    method name."""
    base = [k for k in keys if names[k] == "baseline"]
    fastv = [k for k in keys if names[k] in ("fastv", "fastv-mask")]
    out: list[tuple[str, str]] = []
    for b in base:
        out += [(k, b) for k in keys if k != b]
    for f in fastv:
        out += [(k, f) for k in keys if names[k] in ("vtw", "rand")]
    return out


def paired_block(
    outcomes: dict[str, Sequence[Any]], names: dict[str, str], *, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """``{"vtw/baseline": {"prefill": {...}, "decode_per_token": {...}, "e2e": {...},
    "e2e_per_token": {...}}, ...}`` from per-row lists of outcomes (None where not run)."""
    block: dict[str, dict[str, Any]] = {}
    for a, b in pairs_to_compare(list(outcomes), names):
        entry = {}
        for measure, get in MEASURES.items():
            xs = [None if o is None else get(o) for o in outcomes[a]]
            ys = [None if o is None else get(o) for o in outcomes[b]]
            entry[measure] = compare(ratios(xs, ys), seed=seed)
        block[f"{a}/{b}"] = entry
    return block
