"""The VTW paper's FLOPs convention (Eq. 1 and Table 2), as pure functions.

Per decoder layer with sequence length ``s`` and hidden size ``h`` the paper counts
``2*s*s*h + 12*s*h*h`` multiply-adds; doubling gives FLOPs. The FFN is counted with an
up-scaling factor of 4 (not the model's real intermediate size), and the lm_head, the vision
tower and the decoding steps are not counted. This is the only convention that reproduces all
of Table 2 (see tests/bench/test_flops.py), so it is the headline
column of ``vtw bench``; it is an estimate of prefill work, not a measurement.

K is the number of decoder layers that still see the vision tokens (withdrawn before the
layer with 0-based index K), the same meaning as everywhere else in vtw.
"""

from __future__ import annotations

from vtwcli.errors import UsageError

TERA = 1e12


def layer_flops(s: float, h: int) -> float:
    """FLOPs of one decoder layer over ``s`` tokens (multiply-adds of Eq. 1, times 2)."""
    return 2.0 * (2.0 * s * s * h + 12.0 * s * h * h)


def prefill_flops(
    method: str,
    *,
    s: float,
    n_vis: float,
    hidden_size: int,
    num_layers: int,
    k: int | None = None,
    ratio: float = 0.5,
) -> float:
    """Formula FLOPs of one prefill of ``s`` tokens of which ``n_vis`` are vision tokens.

    ``baseline``: every layer sees all ``s`` tokens. ``vtw``: K layers see ``s``, the rest
    ``s - n_vis``. ``fastv``: K layers see ``s``, the rest ``s - ratio * n_vis`` (``ratio`` is
    the share of vision tokens pruned). ``rand`` drops as many prompt tokens as there are
    vision tokens, so it costs what ``vtw`` costs.
    """
    if s <= 0 or n_vis < 0 or n_vis > s:
        raise UsageError(f"FLOPs need 0 <= n_vis <= s and s > 0 (got s={s}, n_vis={n_vis})")
    full = layer_flops(s, hidden_size)
    if method == "baseline":
        return num_layers * full
    if k is None or not 1 <= k <= num_layers:
        raise UsageError(f"K must be in 1..{num_layers} for method {method!r}, got {k!r}")
    if method in ("vtw", "rand"):
        short = s - n_vis
    elif method == "fastv":
        if not 0.0 <= ratio <= 1.0:
            raise UsageError(f"the FastV ratio must be in 0..1, got {ratio}")
        short = s - ratio * n_vis
    else:
        raise UsageError(f"no FLOPs formula for method {method!r} (known: baseline, vtw, fastv, rand)")
    return k * full + (num_layers - k) * layer_flops(short, hidden_size)


def prefill_tflops(method: str, **kwargs) -> float:
    return prefill_flops(method, **kwargs) / TERA
