"""Honest timing: synchronize the device around every timed region, keep every run.

A generate() call is timed from outside (end to end), and a logits processor that runs after
each forward pass marks the step boundaries: the first mark ends the prefill (plus choosing
the first token), the next marks end one decode step each. Every device the model spans is
synchronized at every mark (a model split with a device map runs its last layers on another
GPU than its first), so asynchronous CUDA kernels are counted in the step that launched them.
Warm-up runs are never passed through here. Statistics keep the per-run numbers beside the median.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def _as_list(devices: Any) -> list[Any]:
    if devices is None:
        return []
    if isinstance(devices, (list, tuple, set, frozenset)):
        return list(devices)
    return [devices]


def synchronize(devices: Any) -> None:
    """Wait for queued work on each of ``devices`` (one device or a list; no-op on CPU)."""
    import torch

    for device in _as_list(devices):
        dev = torch.device(device) if not isinstance(device, torch.device) else device
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        elif dev.type == "mps":  # pragma: no cover - not available in CI
            torch.mps.synchronize()
        elif dev.type == "xpu":  # pragma: no cover
            torch.xpu.synchronize(dev)


def model_devices(model: Any) -> list[Any]:
    """Every device holding a parameter or buffer of ``model``, in a stable order."""
    import torch

    seen: dict[str, torch.device] = {}
    tensors = list(model.parameters()) + list(model.buffers()) if hasattr(model, "parameters") else []
    for t in tensors:
        seen.setdefault(str(t.device), t.device)
    return [seen[k] for k in sorted(seen)]


class Clock:
    """``perf_counter`` with every device synchronized before each reading.

    ``sync`` replaces :func:`synchronize` (tests pass a fake that records its calls).
    """

    def __init__(self, devices: Any, sync: Callable[[Any], None] | None = None, timer: Callable[[], float] | None = None):
        self.devices = _as_list(devices)
        self._sync = sync or synchronize
        self._timer = timer or time.perf_counter

    def now(self) -> float:
        self._sync(self.devices)
        return self._timer()


class StepClock:
    """A generate() logits processor that records when each forward pass finished.

    ``devices``: one device or every device the model spans; each is synchronized at every mark.
    """

    def __init__(self, devices: Any, sync: Callable[[Any], None] | None = None, timer: Callable[[], float] | None = None):
        self.clock = Clock(devices, sync=sync, timer=timer)
        self.marks: list[float] = []
        self.start: float | None = None
        self.end: float | None = None

    @property
    def devices(self) -> list[Any]:
        return self.clock.devices

    def begin(self) -> None:
        self.marks.clear()
        self.end = None
        self.start = self.clock.now()

    def finish(self) -> None:
        self.end = self.clock.now()

    def __call__(self, input_ids, scores):  # the LogitsProcessor protocol
        self.marks.append(self.clock.now())
        return scores

    @property
    def prefill_s(self) -> float | None:
        return None if not self.marks or self.start is None else self.marks[0] - self.start

    @property
    def decode_s_per_token(self) -> float | None:
        """Mean seconds per decode step; None when only one token was produced."""
        if len(self.marks) < 2:
            return None
        return (self.marks[-1] - self.marks[0]) / (len(self.marks) - 1)

    @property
    def total_s(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start


@dataclass
class Stat:
    """Median and spread of a list of measurements (per-run values kept)."""

    values: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def quantile(self, q: float) -> float | None:
        if not self.values:
            return None
        xs = sorted(self.values)
        # linear interpolation between closest ranks (numpy's default)
        pos = q * (len(xs) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    def summary(self, scale: float = 1.0) -> dict[str, Any] | None:
        if not self.values:
            return None
        return {
            "median": self.median * scale,
            "p25": self.quantile(0.25) * scale,
            "p75": self.quantile(0.75) * scale,
            "min": min(self.values) * scale,
            "max": max(self.values) * scale,
            "n": self.n,
        }
