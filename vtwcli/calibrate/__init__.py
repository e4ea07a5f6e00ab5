"""Calibration: choose the withdrawal layer K by the paper's KL criterion (Eq. 6).

``vtwcli.calibrate.calibrate(...)`` is the entry point; ``vtwcli.calibrate(...)`` works too,
because ``vtwcli`` maps the name lazily and importing this package also binds the package
itself to ``vtwcli.calibrate``, so the package is made callable (it forwards to the function).
The KL math lives in :mod:`vtwcli.calibrate.kl` and imports no torch at module level.
"""

from __future__ import annotations

import sys
import types

from vtwcli.calibrate.api import CalibrationResult, calibrate, vtw_flops_ratio
from vtwcli.calibrate.kl import DIRECTIONS, CurvePoint, choose_k, kl_from_logits, summarize, withdrawal_kl

__all__ = [
    "DIRECTIONS",
    "CalibrationResult",
    "CurvePoint",
    "calibrate",
    "choose_k",
    "kl_from_logits",
    "summarize",
    "vtw_flops_ratio",
    "withdrawal_kl",
]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return calibrate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
