"""Showing an inspection: rich tables for the terminal, and the paper-style pictures (matplotlib)."""

from __future__ import annotations

from pathlib import Path

from vtwcli.inspect.api import InspectResult
from vtwcli.inspect.probe import TYPES


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def layer_table(result: InspectResult):
    """Figure 4 as a table: one row per layer, the share of each token type."""
    from rich.table import Table

    where = f", engine {result.engine['method']} at K={result.engine['k']}" if result.engine else ""
    table = Table(title=f"attention of output tokens by layer ({result.name} on {result.task}, "
                        f"{len(result.sample_ids)} samples{where})")  # fmt: skip
    table.add_column("layer", justify="right")
    for name in TYPES:
        table.add_column(name, justify="right")
    table.add_column("", justify="left")  # the vision share as a bar, so its fall is visible at a glance
    for j, row in enumerate(result.per_layer):
        label = str(j)
        style = None
        if result.k is not None and j == result.k:
            label, style = f"{j} <- K", "bold"
        if row is None:  # linear attention / convolution: no attention to share out
            table.add_row(label, *(["n/a"] * len(TYPES)), "(no attention in this layer)", style=style)
            continue
        bar = "#" * round(20 * row[1])
        table.add_row(label, *(_pct(x) for x in row), bar, style=style)
    return table


def position_table(result: InspectResult):
    """Figure 5 as a table: one row per output position, shares averaged over layers."""
    from rich.table import Table

    table = Table(title="attention by output token (averaged over layers)")
    table.add_column("output token", justify="right")
    for name in TYPES:
        table.add_column(name, justify="right")
    table.add_column("samples", justify="right")
    for t, (row, n) in enumerate(zip(result.per_position, result.position_counts, strict=True)):
        table.add_row(str(t), *(_pct(x) for x in row), str(n))
    return table


def summary_lines(result: InspectResult) -> list[str]:
    p = result.prompt_tokens
    lines = [
        f"prompt: {p['system']:.1f} system, {p['vision']:.1f} vision, {p['instruction']:.1f} instruction tokens "
        f"on average; {result.outputs_per_sample:.1f} output tokens per sample; {result.seconds:.1f} s"
    ]
    vision = [None if row is None else row[1] for row in result.per_layer]
    after = next((j for j in range(1, len(vision))
                  if vision[j] is not None and all(v is None or v < 0.05 for v in vision[j:])), None)
    if after is not None:
        lines.append(f"vision tokens get under 5% of the attention from layer {after} on")
    else:
        lines.append("vision tokens keep 5% or more of the attention in the last layer")
    if result.k is not None:
        lines.append(f"K = {result.k} marked ({result.k_source})")
    return lines


def write_png(result: InspectResult, path: str | Path) -> Path:
    """Two panels in the style of the paper's Figures 4 and 5: stacked shares per layer
    (K marked) and one line per token type over the output positions."""
    from vtwcli.plotting import TYPE_COLOURS, pyplot, save

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    layers = list(range(result.num_layers))
    bottom = [0.0] * result.num_layers
    for c, name in enumerate(TYPES):
        values = [0.0 if row is None else row[c] for row in result.per_layer]
        ax1.bar(layers, values, bottom=bottom, color=TYPE_COLOURS[c], label=name, width=0.85)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for j, row in enumerate(result.per_layer):
        if row is None:
            ax1.text(j, 0.5, "n/a", fontsize=7, ha="center", va="center", rotation=90)
    if result.k is not None:
        ax1.axvline(result.k - 0.5, color="black", linestyle="--", linewidth=1.2)
        ax1.text(result.k - 0.4, 0.97, f"K = {result.k}", fontsize=9, va="top",
                 bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    ax1.set_xlabel("layer")
    ax1.set_ylabel("share of attention")
    ax1.set_ylim(0, 1)
    ax1.set_xlim(-0.6, result.num_layers - 0.4)
    ax1.set_title("by layer (heads, output tokens averaged)", fontsize=10)
    positions = list(range(len(result.per_position)))
    for c, name in enumerate(TYPES):
        ax2.plot(positions, [row[c] for row in result.per_position], marker="o", color=TYPE_COLOURS[c], label=name)
    ax2.set_xlabel("output token")
    ax2.set_ylim(0, 1)
    ax2.set_xticks(positions)
    ax2.set_title("by output token (heads, layers averaged)", fontsize=10)
    ax2.legend(fontsize=8, loc="upper right")
    where = f"; engine {result.engine['method']} at K={result.engine['k']}" if result.engine else ""
    fig.suptitle(f"{result.name} on {result.task}: attention of output tokens ({len(result.sample_ids)} samples{where})",
                 fontsize=11)  # fmt: skip
    fig.tight_layout()
    return save(fig, path)
