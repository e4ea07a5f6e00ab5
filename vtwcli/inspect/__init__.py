"""Where the output tokens' attention goes, layer by layer (the paper's Figures 4 and 5).

``vtwcli.inspect(model, data, ...)`` (also ``vtwcli.inspect.inspect``) is what ``vtw
inspect`` calls; :class:`AttentionProbe` is the per-sample recorder underneath, usable on any
supported Hugging Face model and ``generate()`` call. ``vtwcli.inspect`` is both this
subpackage and the lazily exported function, so the module is made callable.
"""

from __future__ import annotations

import sys
import types

from vtwcli.inspect.api import InspectResult, inspect
from vtwcli.inspect.probe import TYPES, AttentionProbe, SampleShares, token_types

__all__ = ["TYPES", "AttentionProbe", "InspectResult", "SampleShares", "inspect", "token_types"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return inspect(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
