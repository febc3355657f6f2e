"""The calibration figure: parity of predicted vs measured TTFT and TPOT (raw roofline and out-of-fold
calibrated), and the learning curve — error against the number of profiled models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import FuncFormatter, NullFormatter

from cobench.fit.calibration.record import Calibration
from cobench.report.figures import pyplot, save


def plot(c: Calibration, out: Path) -> list[Path]:
    """Write <out>.png and <out>.svg (three panels) from the calibration's own report."""
    rows = c.report["per_model"]
    curve = c.report.get("learning_curve") or []
    fig, axes = pyplot().subplots(1, 3 if curve else 2, figsize=(14 if curve else 9.5, 4.6), dpi=110)
    for ax, metric, title in zip(axes, ("ttft", "tpot"), ("TTFT (prefill)", "TPOT (decode step)"), strict=False):
        measured = np.array([r[f"measured_{metric}_s"] for r in rows]) * 1e3
        for kind, colour, label in (
            ("raw", "tab:grey", "raw roofline"),
            ("cv", "tab:blue", "calibrated (cross-validated)"),
        ):
            predicted = measured * (1 + np.array([r[f"{kind}_{metric}_error"] for r in rows]))
            ax.scatter(measured, predicted, s=22, color=colour, alpha=0.85, label=label)
        lo = min(measured.min(), *(measured * (1 + np.array([r[f"raw_{metric}_error"] for r in rows])))) * 0.8
        hi = measured.max() * 1.25
        line = np.array([lo, hi])
        ax.plot(line, line, "k-", lw=1)
        ax.fill_between(line, line * 0.9, line * 1.1, color="tab:green", alpha=0.12, label="±10 %")
        ax.fill_between(line, line * 0.95, line * 1.05, color="tab:green", alpha=0.18, label="±5 %")
        e = c.report["errors"][metric]
        ax.set_title(
            f"{title}: MAPE raw {e['raw']['mape']:.1f} %, calibrated (CV) {e['cross_validated']['mape']:.1f} %",
            fontsize=9,
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # log axes over less than a decade label every minor tick: too many
            axis.set_minor_formatter(NullFormatter())
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("measured (ms)")
        ax.set_ylabel("predicted (ms)")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7, loc="upper left")
    if curve:
        ax = axes[2]
        n = [r["models"] for r in curve]
        ax.plot(n, [r["ttft_mape"] for r in curve], "o-", label="TTFT")
        ax.plot(n, [r["tpot_mape"] for r in curve], "s-", label="TPOT")
        ax.axhline(5, color="tab:green", ls="--", lw=1, label="5 %")
        ax.set_yscale("log")
        ax.set_xlabel("profiled models used for fitting (0 = kernels only)")
        ax.set_ylabel("MAPE on models not used (%)")
        ax.set_title("learning curve (median over random subsets)", fontsize=9)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7)
    fig.suptitle(f"Calibration {c.label}", fontsize=10)
    return save(fig, out)
