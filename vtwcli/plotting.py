"""Pictures, drawn with matplotlib: an optional extra, imported only when a plot is asked for.

``pip install 'vtwcli[plot]'`` installs it; without it, asking for a plot is one clear error
(and the terminal output, which needs nothing, is unchanged). Every figure is rendered to
memory and written atomically, so a failed draw leaves no half-written file.
"""

from __future__ import annotations

import io
from pathlib import Path

from vtwcli.errors import MissingExtraError

# one colour per token type (system, vision, instruction, output) and per curve, everywhere
TYPE_COLOURS = ("#7f7f7f", "#d62728", "#1f77b4", "#2ca02c")


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or a clear error saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise MissingExtraError(
            "drawing a plot needs matplotlib, which is not installed: pip install 'vtwcli[plot]' "
            "(or pip install matplotlib), or leave out --plot"
        ) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def check_plot_path(path: str | Path | None) -> Path | None:
    """Fail before any work: matplotlib present, the path writable and a PNG."""
    from vtwcli.errors import UsageError
    from vtwcli.fileio import check_writable

    if path is None:
        return None
    if Path(path).suffix.lower() != ".png":
        raise UsageError(f"--plot writes a PNG picture; give a file name ending in .png, got {str(path)!r}")
    pyplot()
    return check_writable(path, "png")


def save(fig, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG at ``path`` (atomically) and close it."""
    from vtwcli.fileio import write_atomic_bytes

    plt = pyplot()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return write_atomic_bytes(path, buf.getvalue())
