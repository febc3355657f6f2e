"""The loss-law figure: observed against predicted final loss per law, held-out runs marked."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cobench.fit.loss_law import LawFit, Runs
from cobench.report.figures import pyplot, save


def plot(fits: list[LawFit], fitted: Runs, heldout: Runs, out: Path) -> list[Path]:
    fig, axes = pyplot().subplots(1, len(fits), figsize=(4.6 * len(fits), 4.4), dpi=110, squeeze=False)
    for ax, f in zip(axes[0], fits, strict=True):
        for runs, colour, label in ((fitted, "tab:blue", "fitted"), (heldout, "tab:red", "held out")):
            if len(runs):
                ax.scatter(runs.loss, f.predict(runs), s=24, color=colour, label=label, alpha=0.85)
        every = np.concatenate([fitted.loss, heldout.loss])
        line = np.array([every.min() * 0.97, every.max() * 1.03])
        ax.plot(line, line, "k-", lw=1)
        held = f"; held-out R² {f.heldout_metrics['r2']:.3f}" if f.heldout_metrics else ""
        ax.set_title(f"{f.law}: fit R² {f.fit_metrics['r2']:.3f}{held}", fontsize=9)
        ax.set_xlabel("observed final loss (nats)")
        ax.set_ylabel("predicted loss")
        ax.grid(True, alpha=0.25)
        ax.legend(fontsize=7)
    return save(fig, out)
