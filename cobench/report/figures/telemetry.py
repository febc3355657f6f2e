"""Telemetry figure: the first few series of the last profiled candidates, per phase."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cobench.report.figures import pyplot, save

SKIPPED = ("energy_mj", "throttle_mask")  # counters and bit masks do not plot as lines


def plot(series: list[tuple[str, str, dict[str, Any]]], target: Path, max_panels: int = 4) -> list[Path]:
    """`series`: (architecture, phase, series JSON) triples; one panel per quantity."""
    keys = sorted({k for _, _, s in series for k in s["values"] if k not in SKIPPED})[:max_panels]
    fig, axes = pyplot().subplots(len(keys), 1, figsize=(9, 1.9 * len(keys) + 0.6), dpi=110, sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        for arch, phase, s in series:
            if key in s["values"] and s["t_s"]:
                t = np.asarray(s["t_s"]) - s["t_s"][0]
                ax.plot(t, np.asarray(s["values"][key], dtype=float), lw=1, label=f"{arch} {phase}")
        ax.set_ylabel(key, fontsize=8)
        ax.grid(True, alpha=0.25)
    axes[0, 0].legend(fontsize=6, ncol=2)
    axes[-1, 0].set_xlabel("time in phase (s)")
    return save(fig, target)
