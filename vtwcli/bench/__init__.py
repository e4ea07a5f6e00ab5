"""Benchmarking: the paper's FLOPs formula, honest timing, memory, and the comparison runner.

``from vtwcli.bench import bench`` gives the function the ``vtw bench`` command calls;
``vtwcli.bench(...)`` works too. (``vtwcli.bench`` is both this subpackage and the lazily
exported function: once the subpackage is imported, Python binds the attribute to the module,
so the module itself is made callable and forwards to :func:`bench`.)
"""

from __future__ import annotations

import sys
import types

from vtwcli.bench.flops import layer_flops, prefill_flops, prefill_tflops
from vtwcli.bench.kvcache import analytic_cache_bytes, cache_bytes, layer_bytes
from vtwcli.bench.result import BenchResult, MethodRow
from vtwcli.bench.runner import METHODS, bench

__all__ = [
    "METHODS",
    "BenchResult",
    "MethodRow",
    "analytic_cache_bytes",
    "bench",
    "cache_bytes",
    "layer_bytes",
    "layer_flops",
    "prefill_flops",
    "prefill_tflops",
]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return bench(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
