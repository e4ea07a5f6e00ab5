"""Showing a calibration: the KL curve as a rich table, a small terminal plot, and a PNG.

The terminal plot needs nothing; the PNG is drawn with matplotlib (the optional ``plot``
extra, imported only when a picture is asked for), like every other picture vtw draws.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from vtwcli.calibrate.api import CalibrationResult, vtw_flops_ratio


def _floor(values, eta: float) -> float:
    positive = [v for v in values if v > 0]
    return min(positive + [eta]) / 10.0


def curve_table(result: CalibrationResult):
    from rich.table import Table

    h = result.hidden_size
    table = Table(title=f"KL({result.direction.replace('||', ' || ')}) by K  ({result.task}, "
                  f"{len(result.sample_ids)} samples, eta={result.eta:g})")
    table.add_column("K", justify="right")
    table.add_column("mean KL", justify="right")
    table.add_column("min", justify="right")
    table.add_column("max", justify="right")
    table.add_column("std", justify="right")
    table.add_column("< eta", justify="center")
    if h:
        table.add_column("FLOPs", justify="right")
    for k, p in result.curve.items():
        below = p.mean < result.eta and k < result.num_layers
        row = [str(k), f"{p.mean:.3g}", f"{p.min:.3g}", f"{p.max:.3g}", f"{p.std:.3g}", "yes" if below else ""]
        if h:
            ratio = vtw_flops_ratio(k, result.num_layers, result.mean_prompt_length, result.mean_vision_tokens, h)
            row.append(f"{ratio:.0%}")
        style = "bold green" if k == result.k else None
        if k == result.k:
            row[0] = f"{k} <- K"
        table.add_row(*row, style=style)
    return table


def threshold_table(result: CalibrationResult):
    """The K each threshold picks from the one sweep (the paper's Table 5), or None for one eta."""
    from rich.table import Table

    if len(result.thresholds) < 2:
        return None
    table = Table(title="K by eta, from the one sweep")
    table.add_column("eta", justify="right")
    table.add_column("K", justify="right")
    table.add_column("mean KL at K", justify="right")
    table.add_column("FLOPs", justify="right")
    for row in result.thresholds:
        k = row["k"]
        kl = result.curve[k].mean if k in result.curve else 0.0
        note = "" if row["reached"] else " (none reached)"
        table.add_row(f"{row['eta']:g}", f"{k}{note}", f"{kl:.3g}", f"{row['flops_ratio']:.0%}",
                      style="bold" if row["eta"] == result.eta else None)
    return table


def ascii_plot(curve: Mapping[int, float], eta: float, chosen_k: int, height: int = 8) -> list[str]:
    """A log-scale plot of mean KL by K, a few lines tall; ``*`` points, ``-`` eta, ``|`` chosen K."""
    ks = sorted(curve)
    if not ks:
        return []
    values = [curve[k] for k in ks]
    lo = math.log10(_floor(values, eta))
    hi = math.log10(max(values + [eta]))
    if hi <= lo:
        hi = lo + 1.0
    step = 3 if len(ks) <= 24 else 2

    def row_of(v: float) -> int:
        x = math.log10(max(v, 10**lo))
        return round((hi - x) / (hi - lo) * (height - 1))

    grid = [[" "] * (len(ks) * step) for _ in range(height)]
    eta_row = row_of(eta)
    for c in range(len(ks) * step):
        grid[eta_row][c] = "-"
    if chosen_k in ks:
        col = ks.index(chosen_k) * step + step // 2
        for r in range(height):
            if grid[r][col] == " ":
                grid[r][col] = "|"
    for i, v in enumerate(values):
        if v > 0:  # K = N withdraws nothing: KL 0 has no place on a log axis
            grid[row_of(v)][i * step + step // 2] = "*"
    lines = []
    for r in range(height):
        level = 10 ** (hi - r * (hi - lo) / (height - 1))
        if r == eta_row:
            level = eta
        label = f"{level:8.1e}" if r in (0, height - 1, eta_row) else " " * 8
        tag = "  eta" if r == eta_row else ""
        lines.append(f"{label} |{''.join(grid[r])}{tag}")
    axis = [" "] * (len(ks) * step)
    for i, k in enumerate(ks):
        if i % max(1, 6 // step) == 0 or k == chosen_k:
            text = str(k)
            start = i * step + step // 2
            for j, ch in enumerate(text):
                if start + j < len(axis):
                    axis[start + j] = ch
    lines.append(" " * 8 + " +" + "-" * (len(ks) * step))
    lines.append(" " * 10 + "".join(axis) + "   K")
    return lines


def write_png(result: CalibrationResult, path: str | Path) -> Path:
    """Draw the mean-KL curve (log scale, min..max band over the samples) with eta and the
    chosen K marked, as a PNG (matplotlib, the ``plot`` extra)."""
    from vtwcli.plotting import pyplot, save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    draw_kl_curve(ax, result.curve, result.eta, result.k)
    ax.set_title(f"{result.model_alias or result.model_id} on {result.task}: mean "
                 f"KL({result.direction.replace('||', ' || ')}) by K, {len(result.sample_ids)} samples",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    return save(fig, path)


def draw_kl_curve(ax, curve, eta: float | None, k: int | None) -> None:
    """The KL curve on ``ax``: mean by K (log scale), the min..max band, eta and K marked.
    ``curve`` maps K to a CurvePoint or to a dict with mean/min/max (a profile's record)."""
    def get(p, key):
        return float(p[key]) if isinstance(p, dict) else float(getattr(p, key))

    # KL 0 (K = N, nothing withdrawn) has no place on a log axis
    ks = [int(kk) for kk, p in curve.items() if get(p, "mean") > 0]
    pts = [curve[kk] if kk in curve else curve[str(kk)] for kk in ks]
    means = [get(p, "mean") for p in pts]
    floor = min([v for v in means if v > 0] + ([eta] if eta else [1.0])) / 10.0
    lows = [max(get(p, "min"), floor) for p in pts]
    highs = [get(p, "max") for p in pts]
    ax.fill_between(ks, lows, highs, color="#1f77b4", alpha=0.15, linewidth=0, label="min..max over samples")
    ax.plot(ks, means, marker="o", color="#1f77b4", label="mean KL")
    ax.set_yscale("log")
    if eta:
        ax.axhline(eta, color="#d62728", linestyle="--", linewidth=1.2, label=f"eta = {eta:g}")
    if k is not None:
        ax.axvline(k, color="#2ca02c", linewidth=1.5, label=f"K = {k}")
    ax.set_xlabel("K (layers that see the vision tokens)")
    ax.set_ylabel("KL")
    ax.set_xticks(sorted(int(kk) for kk in curve))
    ax.legend(fontsize=8)
