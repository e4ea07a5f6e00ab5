"""KL math over logits: pure functions, no model in sight.

The paper's criterion (Eq. 6, and what its released code computes) is the KL divergence
between the next-token distribution of withdrawal decoding and that of normal decoding at
the last prompt token, ``KL(P_withdrawn || P_full)``, averaged over the calibration samples;
K is the first candidate whose mean falls below eta. Both directions are offered because KL
is asymmetric: ``withdrawn||full`` punishes mass the withdrawn model puts where the full model
has little, ``full||withdrawn`` the reverse.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DIRECTIONS = ("withdrawn||full", "full||withdrawn")


def check_direction(direction: str) -> str:
    """The canonical name of ``direction``; ``withdrawn-full`` spells ``withdrawn||full`` without shell quoting."""
    from vtwcli.errors import UsageError

    name = str(direction).replace("-", "||")
    if name not in DIRECTIONS:
        raise UsageError(
            f"--direction must be withdrawn-full (the paper's) or full-withdrawn, got {direction!r}"
        )
    return name


def kl_from_logits(p_logits, q_logits):
    """KL(P || Q) per row, where P = softmax(p_logits), Q = softmax(q_logits) over the last axis.

    Computed in float64 from log-softmax, so a distribution that is nearly one-hot does not
    turn into 0 * log 0 = NaN, and identical logits give exactly 0.
    """
    import torch

    lp = torch.log_softmax(p_logits.to(torch.float64), dim=-1)
    lq = torch.log_softmax(q_logits.to(torch.float64), dim=-1)
    # exp(lp) underflows to 0 where P has no mass, which is the 0 * log 0 = 0 convention
    return (lp.exp() * (lp - lq)).sum(dim=-1).clamp_min(0.0)


def withdrawal_kl(withdrawn_logits, full_logits, direction: str = "withdrawn||full"):
    """KL between withdrawal and normal decoding, in the chosen direction, per row."""
    if check_direction(direction) == "withdrawn||full":
        return kl_from_logits(withdrawn_logits, full_logits)
    return kl_from_logits(full_logits, withdrawn_logits)


@dataclass(frozen=True)
class CurvePoint:
    """The KL at one candidate K over the calibration samples."""

    k: int
    mean: float
    min: float
    max: float
    std: float  # population standard deviation over samples

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "min": self.min, "max": self.max, "std": self.std}


def summarize(k: int, per_sample: Sequence[float]) -> CurvePoint:
    values = [float(v) for v in per_sample]
    if not values:
        raise ValueError("summarize() needs at least one sample")
    mean = math.fsum(values) / len(values)
    var = math.fsum((v - mean) ** 2 for v in values) / len(values)
    return CurvePoint(k=k, mean=mean, min=min(values), max=max(values), std=math.sqrt(var))


def choose_k(curve: Mapping[int, float], eta: float, num_layers: int) -> tuple[int, bool]:
    """The first K below N (in increasing order) whose mean KL is strictly below ``eta``.

    Returns ``(K, reached)``. K = N withdraws nothing (its KL is 0 by definition), so it is
    the fallback, not a candidate: when no K < N qualifies, K = ``num_layers`` and ``reached``
    is False. The paper's code raised here; a profile with K = N is always safe.
    """
    for k in sorted(curve):
        if k < num_layers and curve[k] < eta:
            return k, True
    return num_layers, False
