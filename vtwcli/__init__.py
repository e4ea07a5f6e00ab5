"""vtw: Visual Tokens Withdrawal for multimodal LLMs.

The library API is what the ``vtw`` command calls::

    import vtwcli
    with vtwcli.withdraw(model, k=16):
        model.generate(**inputs)

Heavy modules (torch, transformers) load on first use of an attribute, so ``import vtwcli``
and ``vtw --help`` stay fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily on first access)
_LAZY = {
    "withdraw": "vtwcli.engine",
    "apply": "vtwcli.engine",
    "EngineHandle": "vtwcli.engine",
    "get_arch": "vtwcli.archs",
    "load_model": "vtwcli.models",
    "get_task": "vtwcli.data",
    "Profile": "vtwcli.profiles",
    "load_profile": "vtwcli.profiles",
    "calibrate": "vtwcli.calibrate",
    "bench": "vtwcli.bench",
    "inspect": "vtwcli.inspect",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return getattr(module, name)
    raise AttributeError(f"module 'vtwcli' has no attribute {name!r}")
