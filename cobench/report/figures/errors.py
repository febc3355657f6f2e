"""Histogram of a calibration's cross-validated errors, TTFT and TPOT."""

from __future__ import annotations

from pathlib import Path

from cobench.fit.calibration.record import Calibration
from cobench.report.figures import pyplot, save


def plot(c: Calibration, out: Path) -> list[Path]:
    fig, ax = pyplot().subplots(figsize=(6, 3.4), dpi=110)
    rows = c.report["per_model"]
    for metric, colour in (("ttft", "tab:blue"), ("tpot", "tab:orange")):
        values = [r[f"cv_{metric}_error"] * 100 for r in rows]
        ax.hist(values, bins=12, alpha=0.6, color=colour, label=f"{metric.upper()} (n={len(values)})")
    ax.axvspan(-5, 5, color="tab:green", alpha=0.1, label="±5 %")
    ax.set_xlabel("cross-validated error (%)")
    ax.set_ylabel("models")
    ax.legend(fontsize=7)
    return save(fig, out)
