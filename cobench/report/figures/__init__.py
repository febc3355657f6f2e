"""Figure plumbing shared by every plot: a headless matplotlib, and PNG + SVG written side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed), imported only when a figure is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, out: Path) -> list[Path]:
    """Write <out>.png and <out>.svg and close the figure. The extensions are appended, not swapped in: a
    name like `cpu-llama.cpp-q4_k_m-v2-parity` has no extension to replace."""
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    base = out.with_suffix("") if out.suffix in (".png", ".svg") else out
    paths = [base.with_name(base.name + ext) for ext in (".png", ".svg")]
    for path in paths:
        fig.savefig(path)
    fig.clf()
    pyplot().close(fig)
    return paths
