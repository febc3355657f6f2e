"""`cobench pareto` and `cobench select` over a scored search space: the frontier with the reference
comparison (stored for the report), and the candidates worth measuring next (written as a queue)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.architecture import ArchBatch, param_counts
from cobench.arch.queue import write_queue
from cobench.arch.space import load_space
from cobench.arch.spec import load_architecture
from cobench.errors import InputError
from cobench.fit.loss_law import LawFit, published_fit
from cobench.predict.roofline import predict
from cobench.search.pareto import at_reference, frontier, runs_of, select
from cobench.search.scoring import Scored, Scoring, default_tokens, latency_of, measured_features, score
from cobench.store import Store


def law_fit(store: Store, which: str | None) -> LawFit:
    """A stored loss-law fit by id or law name (newest), the co-design paper's published law
    (`paper-published`), or an error saying to run `cobench fit`."""
    if which == "paper-published":
        return published_fit()
    found = store.fits.get(which)
    if not found:
        raise InputError(
            "law", f"no loss-law fit {which or ''} in the store: run `cobench fit` first".replace("  ", " ")
        )
    return LawFit.from_json(found)


def _reference(spec: str, r: Scoring, law: LawFit, s: Scored) -> dict[str, Any]:
    """The reference architecture at its own predicted latency (at the first precision), and the best feasible
    candidate no slower."""
    a = load_architecture(spec)
    base = load_space(r.space).workload
    w = replace(base, precision=(r.precisions or [base.precision])[0], kv_precision=None)
    m = r.model_for(w.precision)
    ref_latency = float(latency_of(predict(a, r.device, w, m.params, m.counting), r.metric)[0])
    ref_tokens = default_tokens([param_counts(a).active], r.tokens)
    ref_loss = float(law.predict(runs_of(ArchBatch.of([a]), ref_tokens))[0])
    found = at_reference(s.latency, s.loss, s.feasible, ref_latency, ref_loss)
    return {
        "arch": a.name,
        "latency_s": found.latency,
        "loss": found.loss,
        "best": s.row(found.best_index) if found.best_index is not None else None,
        "loss_change": found.loss_change,
    }


@dataclass(frozen=True)
class Frontier:
    """What `cobench pareto` found; `summary` is also what the store keeps for the report."""

    summary: dict[str, Any]
    law: str
    device: str
    figures: list[Path]

    def to_json(self) -> dict[str, Any]:
        return self.summary


def pareto(
    store: Store, r: Scoring, reference: str | None, out_path: Path, plot: Callable[..., list[Path]]
) -> Frontier:
    """Score the space, take the feasible frontier, compare with the reference, draw and store it all."""
    from cobench.report.figures.pareto import sample

    law = law_fit(store, r.law)
    s = score(r, law)
    d, metric, limits = r.device, r.metric, r.limits
    ref = _reference(reference, r, law, s) if reference else None
    masked = frontier(np.where(s.feasible, s.latency, np.inf), np.where(s.feasible, s.loss, np.inf))
    front_idx = np.flatnonzero(masked & s.feasible)
    front_rows = [s.row(i) for i in front_idx[np.argsort(s.latency[front_idx])]]
    summary: dict[str, Any] = {
        "device": d.name,
        "space": str(r.space),
        "metric": metric,
        "law": law.law,
        "candidates": len(s.loss),
        "feasible": int(s.feasible.sum()),
        "frontier": front_rows,
        "budgets": limits,
        "latency_model": s.model,
        "reference": ref,
    }
    shown = sample(len(s.loss))
    points = {
        "latency_s": s.latency[shown].tolist(),
        "loss": s.loss[shown].tolist(),
        "feasible": s.feasible[shown].tolist(),
    }
    front = {"latency_s": [r["latency_s"] for r in front_rows], "loss": [r["loss"] for r in front_rows]}
    title = f"Accuracy–latency trade-off on {d.name}: {len(s.loss):,} candidates ({law.law} law)"
    figures = plot(s.latency[shown], s.loss[shown], s.feasible[shown], front, limits, ref, metric, title, out_path)
    summary["figures"] = [str(f) for f in figures]
    summary["id"] = store.analyses.put("pareto", d.name, summary | {"points": points, "front": front, "title": title})
    return Frontier(summary, law.law, d.name, figures)


@dataclass(frozen=True)
class Selection:
    """What `cobench select` picked and where it wrote the queue."""

    queue: Path
    rows: list[dict[str, Any]]  # Scored.row of each pick
    names: list[str]  # the names the queue gives them
    feasible: int
    has_law: bool

    def to_json(self) -> dict[str, Any]:
        return {"queue": str(self.queue), "selected": self.rows}


def select_candidates(store: Store, r: Scoring, k: int, out_path: Path) -> Selection:
    """K candidates spread along and near the predicted frontier, far from what is already measured; before
    any loss-law fit, −log(active params) stands in for the loss."""
    if k < 1:
        raise InputError("k", f"must be at least 1, got {k}")
    law = law_fit(store, r.law) if r.law or store.fits.get() else None
    s = score(r, law)
    space, d = r.space, r.device
    measured = [r.arch for r in store.runs.find()] + [r.arch for r in store.profiles.find(status="ok")]
    picks = select(s.latency, s.loss, s.feasible, s.features, measured_features(measured), k)
    if not len(picks):
        raise InputError("space", f"no candidate of {space} is feasible on {d.name} under the given budgets")
    rows = [s.row(i) for i in picks]
    names = [f"{space.stem}-{row['index']}" for row in rows]
    jobs = [
        {"architecture": row["architecture"] | {"name": n}, "tokens": int(row["tokens"]), "precision": row["precision"]}
        for row, n in zip(rows, names, strict=True)
    ]
    write_queue(out_path, jobs, f"cobench select --space {space} --device {d.name} --k {k}")
    return Selection(out_path, rows, names, int(s.feasible.sum()), law is not None)
