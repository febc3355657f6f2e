"""Accuracy–latency trade-off: predicted loss and latency of every candidate, the Pareto frontier, the
region feasible under budgets, the best candidate at a reference's latency, and a spread selection of
candidates worth measuring next. Pure functions over numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cobench.arch.architecture import ArchBatch, param_counts
from cobench.fit.loss_law import ARCH_COLUMNS, Runs


def frontier(latency: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Mask of the non-dominated points when both are minimised (a dominates b: ≤ in both, < in one).
    Identical points do not dominate each other, so duplicates on the frontier all stay."""
    n = len(latency)
    if n == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((loss, latency))  # by latency, then loss
    lat, y = latency[order], loss[order]
    running = np.minimum.accumulate(y)
    new_min = np.r_[True, y[1:] < running[:-1]]
    holder = np.maximum.accumulate(np.where(new_min, np.arange(n), 0))  # earliest point holding the running min
    prev_min = np.r_[np.inf, running[:-1]]
    prev_lat = np.r_[np.inf, lat[holder[:-1]]]
    dominated = (prev_min < y) | ((prev_min == y) & (prev_lat < lat))
    mask = np.empty(n, dtype=bool)
    mask[order] = ~dominated
    return mask


def runs_of(batch: ArchBatch, tokens: np.ndarray) -> Runs:
    """Candidates as loss-law inputs: N = active non-embedding parameters, D = training tokens."""
    counts = param_counts(batch)
    arch = {c: np.asarray(getattr(batch, c), dtype=float) for c in ARCH_COLUMNS}
    return Runs(
        np.asarray(counts.active - counts.embedding, dtype=float),
        np.asarray(tokens, dtype=float),
        np.zeros(len(batch)),
        arch,
    )


@dataclass(frozen=True)
class Reference:
    latency: float
    loss: float
    best_index: int | None  # the lowest-loss feasible candidate no slower than the reference
    loss_change: float | None  # its loss minus the reference's (negative: better)


def at_reference(
    latency: np.ndarray, loss: np.ndarray, feasible: np.ndarray, ref_latency: float, ref_loss: float
) -> Reference:
    ok = feasible & (latency <= ref_latency)
    if not ok.any():
        return Reference(ref_latency, ref_loss, None, None)
    best = int(np.flatnonzero(ok)[np.argmin(loss[ok])])
    return Reference(ref_latency, ref_loss, best, float(loss[best] - ref_loss))


def select(
    latency: np.ndarray,
    loss: np.ndarray,
    feasible: np.ndarray,
    features: np.ndarray,
    known: np.ndarray,
    k: int,
    near: float = 0.01,
) -> np.ndarray:
    """K candidate indices worth measuring next: from the feasible candidates within `near` (relative loss)
    of the frontier, greedily the one farthest from everything chosen or already measured (`known`, rows
    of the same `features`), in standardised feature space — which both spreads the picks along the
    frontier and favours where the models extrapolate most (far from any measurement)."""
    idx = np.flatnonzero(feasible)
    if len(idx) == 0 or k < 1:
        return np.zeros(0, dtype=np.int64)
    front = idx[frontier(latency[idx], loss[idx])]
    order = np.argsort(latency[front])
    lat_f, loss_f = latency[front][order], loss[front][order]
    pos = np.clip(np.searchsorted(lat_f, latency[idx], side="right") - 1, 0, len(lat_f) - 1)
    pool = idx[loss[idx] <= loss_f[pos] + near * np.abs(loss_f[pos])]  # (a stand-in loss may be negative)
    x = np.c_[np.log(latency[pool]), loss[pool], features[pool]]
    scale = x.std(axis=0)
    scale[scale == 0] = 1
    z = (x - x.mean(axis=0)) / scale
    anchors = (
        (np.c_[np.full(len(known), np.nan), np.full(len(known), np.nan), known] - x.mean(axis=0)) / scale
        if len(known)
        else np.zeros((0, z.shape[1]))
    )
    dist = np.full(len(pool), np.inf)
    for a in anchors:  # measured models: distance in the architecture features only
        dist = np.minimum(dist, np.sqrt(np.nansum((z[:, 2:] - a[2:]) ** 2, axis=1)))
    chosen: list[int] = []
    for _ in range(min(k, len(pool))):
        pick = int(np.argmax(dist)) if np.isfinite(dist).any() else int(np.argmin(latency[pool]))
        chosen.append(pick)
        dist = np.minimum(dist, np.sqrt(np.sum((z - z[pick]) ** 2, axis=1)))
        dist[chosen] = -np.inf
    return pool[np.asarray(chosen, dtype=np.int64)]
