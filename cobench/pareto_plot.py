"""The Pareto figure: every candidate, the feasible ones, the feasible frontier, budgets and the reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cobench.figures import pyplot, save

MAX_POINTS = 20_000  # a random subsample of the cloud keeps the SVG small; the frontier is drawn in full


def plot(
    s: Any,
    on_front: np.ndarray,
    feasible_front: np.ndarray,
    budgets: dict[str, float | None],
    reference: tuple[str, Any] | None,
    metric: str,
    device: str,
    out: Path,
) -> list[Path]:
    fig, ax = pyplot().subplots(figsize=(8, 5.5), dpi=110)
    rng = np.random.default_rng(0)
    every = np.arange(len(s.loss))
    shown = rng.choice(every, MAX_POINTS, replace=False) if len(every) > MAX_POINTS else every
    infeasible = shown[~s.feasible[shown]]
    feasible = shown[s.feasible[shown]]
    ax.scatter(
        s.latency[infeasible] * 1e3, s.loss[infeasible], s=4, color="lightgrey", label="infeasible", rasterized=True
    )
    ax.scatter(
        s.latency[feasible] * 1e3,
        s.loss[feasible],
        s=5,
        color="tab:blue",
        alpha=0.35,
        label="feasible",
        rasterized=True,
    )
    order = feasible_front[np.argsort(s.latency[feasible_front])]
    ax.step(
        s.latency[order] * 1e3, s.loss[order], where="post", color="tab:red", lw=1.8, label="Pareto frontier (feasible)"
    )
    ax.scatter(s.latency[order] * 1e3, s.loss[order], s=16, color="tab:red", zorder=3)
    if budgets.get("latency"):
        ax.axvline(
            budgets["latency"] * 1e3,
            color="black",
            ls="--",
            lw=1,
            label=f"latency budget {budgets['latency'] * 1e3:g} ms",
        )
    if reference:
        name, r = reference
        ax.scatter(
            [r.latency * 1e3],
            [r.loss],
            marker="*",
            s=180,
            color="gold",
            edgecolor="black",
            zorder=4,
            label=f"reference {name}",
        )
        if r.best_index is not None:
            ax.scatter(
                [s.latency[r.best_index] * 1e3], [s.loss[r.best_index]], marker="D", s=60, color="tab:green",
                edgecolor="black", zorder=4, label=f"best at ≤ reference latency ({r.loss_change:+.3f} nats)",
            )  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel(f"predicted {metric} latency (ms)")
    ax.set_ylabel("predicted loss (nats)")
    ax.set_title(f"Accuracy–latency trade-off on {device}: {len(s.loss):,} candidates", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="upper right")
    return save(fig, out)
