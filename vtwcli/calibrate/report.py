"""Showing a calibration: the KL curve as a rich table, a small terminal plot, and a PNG.

The PNG is drawn with Pillow (already a dependency for images) rather than matplotlib: one
log-scale line chart does not justify a ~40 MB optional extra, and ``--plot`` then works on
every install.
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


def write_png(result: CalibrationResult, path: str | Path, size: tuple[int, int] = (720, 420)) -> Path:
    """Draw the mean-KL curve (log scale) with eta and the chosen K marked, as a PNG."""
    from PIL import Image, ImageDraw, ImageFont

    from vtwcli.errors import OutputPathError

    p = Path(path)
    width, height = size
    left, right, top, bottom = 80, 20, 40, 60
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    ks = list(result.curve)
    means = [result.curve[k].mean for k in ks]
    lo = math.floor(math.log10(_floor(means, result.eta)))
    hi = math.ceil(math.log10(max(means + [result.eta])))
    if hi <= lo:
        hi = lo + 1
    k_lo, k_hi = ks[0], max(ks[-1], ks[0] + 1)

    def xy(k: float, v: float) -> tuple[float, float]:
        x = left + (k - k_lo) / (k_hi - k_lo) * (width - left - right)
        y = top + (hi - math.log10(max(v, 10.0**lo))) / (hi - lo) * (height - top - bottom)
        return x, y

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for d in range(lo, hi + 1):
        _, y = xy(k_lo, 10.0**d)
        draw.line([left - 4, y, left, y], fill="black")
        draw.line([left, y, width - right, y], fill=(230, 230, 230))
        draw.text((8, y - 6), f"1e{d:+d}", fill="black", font=font)
    for k in ks:
        x, _ = xy(k, 1.0)
        draw.line([x, height - bottom, x, height - bottom + 4], fill="black")
        draw.text((x - 4, height - bottom + 8), str(k), fill="black", font=font)
    _, ye = xy(k_lo, result.eta)
    x = left
    while x < width - right:  # dashed eta line
        draw.line([x, ye, min(x + 8, width - right), ye], fill=(200, 30, 30), width=2)
        x += 14
    draw.text((width - right - 90, ye - 16), f"eta = {result.eta:g}", fill=(200, 30, 30), font=font)
    if result.k in result.curve:
        xk, _ = xy(result.k, 1.0)
        draw.line([xk, top, xk, height - bottom], fill=(30, 150, 30), width=2)
        draw.text((xk + 4, top + 4), f"K = {result.k}", fill=(30, 150, 30), font=font)
    # KL 0 (K = N, nothing withdrawn) has no place on a log axis
    points = [xy(k, m) for k, m in zip(ks, means, strict=True) if m > 0]
    if len(points) > 1:
        draw.line(points, fill=(30, 60, 200), width=2)
    for px, py in points:
        draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=(30, 60, 200))
    title = (f"{result.model_alias or result.model_id} on {result.task}: mean "
             f"KL({result.direction.replace('||', ' || ')}) by K, {len(result.sample_ids)} samples")
    draw.text((left, 12), title, fill="black", font=font)
    draw.text(((width - left) // 2 + left - 60, height - 24), "K (layers that see the vision tokens)",
              fill="black", font=font)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        img.save(p, format="PNG")
    except OSError as err:
        raise OutputPathError(f"cannot write the plot to {p}: {err.strerror or err}") from err
    return p
