"""`vtw bench --plot`: accuracy and FLOPs against K (the paper's Figure 8a), with the KL curve
of the profile beside it when the run took K from one (Figure 8b)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vtwcli.bench.result import BenchResult
from vtwcli.errors import UsageError


def k_series(result: BenchResult, kind: str = "vtw", positions: str = "keep") -> list[tuple[int, Any]]:
    """(K, row) of every row of ``kind`` with a single K and the ``positions`` policy, sorted by K."""
    rows = [(r.k, r) for r in result.rows if (r.kind or r.method) == kind and r.k is not None and not r.k_range
            and (r.positions or "keep") == positions]  # fmt: skip
    return sorted(rows, key=lambda kr: kr[0])


def profile_curve(result: BenchResult) -> tuple[dict, float | None, int | None] | None:
    """The KL curve, eta and K the profile behind this run recorded (None without one)."""
    path, task = result.settings.get("profile"), result.settings.get("profile_task")
    if not path or not task:
        return None
    from vtwcli.profiles import load_profile

    entry = load_profile(path).tasks.get(task)
    cal = (entry.calibration or {}) if entry is not None else {}
    curve = cal.get("curve")
    if not curve:
        return None
    return curve, cal.get("eta"), entry.k


def write_k_plot(result: BenchResult, path: str | Path) -> Path:
    """Accuracy (agreement with the baseline when the task has no answers) of each vtw row against
    its K, the baseline and the other methods as horizontal lines, the FLOPs ratio on a second
    axis; and the profile's KL curve in a second panel when there is one."""
    from vtwcli.calibrate.report import draw_kl_curve
    from vtwcli.plotting import TYPE_COLOURS, pyplot, save

    series = k_series(result)
    if not series:
        raise UsageError("--plot draws accuracy against K: include vtw in --methods (e.g. --methods baseline,vtw --k 1-6)")
    use_acc = any(r.accuracy is not None for _, r in series)
    metric = "accuracy" if use_acc else "agreement with baseline"

    def value(row):
        return row.accuracy if use_acc else row.agreement

    kl = profile_curve(result)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2 if kl else 1, figsize=(11 if kl else 6.5, 4.0), squeeze=False)
    ax = axes[0][0]
    ks = [k for k, _ in series]
    ax.plot(ks, [value(r) for _, r in series], marker="o", color=TYPE_COLOURS[2], label=f"VTW {metric}")
    styles = {"baseline": ("black", "--"), "noimage": (TYPE_COLOURS[1], ":"), "fastv": (TYPE_COLOURS[3], "-."), "fastv-mask": (TYPE_COLOURS[3], ":"),
              "random-k": ("#9467bd", "-.")}  # fmt: skip
    for row in result.rows:
        kind = row.kind or row.method
        if kind in styles and value(row) is not None:
            colour, style = styles[kind]
            ax.axhline(value(row), color=colour, linestyle=style, linewidth=1.2, label=f"{row.method} {value(row):.3f}")
    for kind, marker, colour, policy in (("white", "s", "#8c564b", "keep"), ("rand", "^", "#ff7f0e", "keep"),
                                         ("vtw", "v", "#17becf", "rearrange")):  # fmt: skip
        other = k_series(result, kind, policy)
        if kind == "vtw":
            kind = "VTW rearranged"
        if other:
            ax.plot([k for k, _ in other], [value(r) for _, r in other], marker=marker, linestyle="--",
                    color=colour, label=f"{kind} {metric}")  # fmt: skip
    ax.set_xlabel("K (layers that see the vision tokens)")
    ax.set_ylabel(metric)
    ax.set_xticks(ks)
    if any(r.tflops_ratio is not None for _, r in series):
        ax2 = ax.twinx()
        ax2.plot(ks, [r.tflops_ratio for _, r in series], marker="x", color="#7f7f7f", linestyle="--",
                 label="FLOPs / baseline")  # fmt: skip
        ax2.set_ylabel("FLOPs / baseline (formula)")
        ax2.set_ylim(0, 1.05)
        lines, labels = ax.get_legend_handles_labels()
        l2, lab2 = ax2.get_legend_handles_labels()
        ax.legend(lines + l2, labels + lab2, fontsize=8, loc="lower right")
    else:
        ax.legend(fontsize=8, loc="lower right")
    name = result.model.get("alias") or result.model.get("id")
    ax.set_title(f"{name} on {result.task.get('name')}: {metric} vs K ({result.task.get('samples')} samples)",
                 fontsize=10)  # fmt: skip
    if kl:
        curve, eta, k = kl
        draw_kl_curve(axes[0][1], curve, eta, k)
        axes[0][1].set_title(f"KL by K from the profile ({result.settings.get('profile_task')})", fontsize=10)
    fig.tight_layout()
    return save(fig, path)
