"""The Pareto figure: every candidate, the feasible ones, the feasible frontier, budgets and the reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cobench.report.figures import pyplot, save

MAX_POINTS = 20_000  # a random subsample of the cloud keeps the SVG small; the frontier is drawn in full


def sample(n: int, limit: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most `limit` of n points (seeded), for figures and for what the store keeps."""
    return np.sort(np.random.default_rng(0).choice(n, limit, replace=False)) if n > limit else np.arange(n)


def plot(
    latency: np.ndarray,
    loss: np.ndarray,
    feasible: np.ndarray,
    front: dict[str, list[float]],
    budgets: dict[str, float | None],
    reference: dict[str, Any] | None,
    metric: str,
    title: str,
    out: Path,
) -> list[Path]:
    """Candidates (a sample), the feasible frontier (`front`: latency_s, loss), budgets and the reference."""
    fig, ax = pyplot().subplots(figsize=(8, 5.5), dpi=110)
    ax.scatter(latency[~feasible] * 1e3, loss[~feasible], s=4, color="lightgrey", label="infeasible", rasterized=True)
    ax.scatter(
        latency[feasible] * 1e3, loss[feasible], s=5, color="tab:blue", alpha=0.35, label="feasible", rasterized=True
    )
    fl, fy = np.asarray(front["latency_s"]) * 1e3, np.asarray(front["loss"])
    ax.step(fl, fy, where="post", color="tab:red", lw=1.8, label="Pareto frontier (feasible)")
    ax.scatter(fl, fy, s=16, color="tab:red", zorder=3)
    if budgets.get("latency"):
        ax.axvline(
            budgets["latency"] * 1e3,
            color="black",
            ls="--",
            lw=1,
            label=f"latency budget {budgets['latency'] * 1e3:g} ms",
        )
    if reference:
        ax.scatter([reference["latency_s"] * 1e3], [reference["loss"]], marker="*", s=180, color="gold",
                   edgecolor="black", zorder=4, label=f"reference {reference['arch']}")  # fmt: skip
        best = reference.get("best")
        if best:
            label = f"best at ≤ reference latency ({reference['loss_change']:+.3f} nats)"
            ax.scatter([best["latency_s"] * 1e3], [best["loss"]], marker="D", s=60, color="tab:green",
                       edgecolor="black", zorder=4, label=label)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel(f"predicted {metric} latency (ms)")
    ax.set_ylabel("predicted loss (nats)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="upper right")
    return save(fig, out)
