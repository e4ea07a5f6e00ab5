"""Visual Tokens Withdrawal as a library.

    import vtwcli
    with vtwcli.withdraw(model, k=16) as handle:     # K = layers that see the vision tokens
        out = model.generate(**inputs, max_new_tokens=32)
    print(handle.last_prefill.vision, handle.last_prefill.kept)

``apply(model, k, ...)`` returns the same :class:`EngineHandle` for long-lived use
(``handle.remove()`` detaches it, idempotent). Methods: ``vtw`` (the paper), ``fastv``
(prune the (R = ``ratio``) least-attended vision tokens at layer K), ``fastv-mask`` (FastV's
masking implementation: the same kept set, every token computed and cached, the pruned ones
masked out as keys) and ``rand`` (drop as many random prompt tokens as there are vision tokens,
seeded). See docs/engine.md.
"""

from __future__ import annotations

from contextlib import contextmanager

from vtwcli.engine.core import (
    METHODS,
    EngineHandle,
    PrefillStats,
    accepted_ks,
    apply,
    attached,
    default_k,
    k_bounds,
    plain_decoder_reason,
)


@contextmanager
def withdraw(model, k: int, method: str = "vtw", ratio: float = 0.5, seed: int = 0, positions: str = "keep"):
    """Attach the engine for the duration of a ``with`` block; hooks are removed on exit,
    also when the block raises. ``positions="rearrange"`` renumbers the tokens layers >= K
    hold (the paper's Table 6 ablation); ``keep`` (default) keeps their original positions."""
    handle = apply(model, k, method=method, ratio=ratio, seed=seed, positions=positions)
    try:
        yield handle
    finally:
        handle.remove()


__all__ = [
    "METHODS",
    "EngineHandle",
    "PrefillStats",
    "apply",
    "accepted_ks",
    "attached",
    "default_k",
    "k_bounds",
    "plain_decoder_reason",
    "withdraw",
]
