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
from cobench.fit.loss_law import LawFit
from cobench.hardware.devices import DeviceSpec
from cobench.predict.latency_model import LatencyModel
from cobench.predict.roofline import predict
from cobench.search.pareto import at_reference, frontier, runs_of, select
from cobench.search.scoring import Scored, default_tokens, latency_of, measured_features, score
from cobench.store import Store

ModelFor = Callable[[str], LatencyModel]  # precision → the latency model to use


def law_fit(store: Store, which: str | None) -> LawFit:
    """A stored loss-law fit by id or law name (newest), or an error saying to run `cobench fit`."""
    found = store.fits.get(which)
    if not found:
        raise InputError(
            "law", f"no loss-law fit {which or ''} in the store: run `cobench fit` first".replace("  ", " ")
        )
    return LawFit.from_json(found)


def _reference(
    spec: str, space: Path, d: DeviceSpec, law: LawFit, tokens: int | None, metric: str, precision: str | None,
    model_for: ModelFor, s: Scored,
) -> dict[str, Any]:  # fmt: skip
    """The reference architecture at its own predicted latency, and the best feasible candidate no slower."""
    a = load_architecture(spec)
    base = load_space(space).workload
    w = replace(base, precision=precision or base.precision, kv_precision=None)
    m = model_for(w.precision)
    ref_latency = float(latency_of(predict(a, d, w, m.params, m.counting), metric)[0])
    ref_tokens = default_tokens([param_counts(a).active], tokens)
    ref_loss = float(law.predict(runs_of(ArchBatch.of([a]), ref_tokens))[0])
    r = at_reference(s.latency, s.loss, s.feasible, ref_latency, ref_loss)
    return {
        "arch": a.name,
        "latency_s": r.latency,
        "loss": r.loss,
        "best": s.row(r.best_index) if r.best_index is not None else None,
        "loss_change": r.loss_change,
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
    store: Store,
    space: Path,
    d: DeviceSpec,
    law_name: str | None,
    tokens: int | None,
    metric: str,
    precisions: list[str] | None,
    limits: dict[str, float | None],
    model_for: ModelFor,
    reference: str | None,
    out_path: Path,
    plot: Callable[..., list[Path]],
) -> Frontier:
    """Score the space, take the feasible frontier, compare with the reference, draw and store it all."""
    from cobench.report.figures.pareto import sample

    law = law_fit(store, law_name)
    s = score(space, d, law, tokens, metric, precisions, limits, model_for)
    first = (precisions or [None])[0]
    ref = _reference(reference, space, d, law, tokens, metric, first, model_for, s) if reference else None
    masked = frontier(np.where(s.feasible, s.latency, np.inf), np.where(s.feasible, s.loss, np.inf))
    front_idx = np.flatnonzero(masked & s.feasible)
    front_rows = [s.row(i) for i in front_idx[np.argsort(s.latency[front_idx])]]
    summary: dict[str, Any] = {
        "device": d.name,
        "space": str(space),
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


def select_candidates(
    store: Store,
    space: Path,
    d: DeviceSpec,
    k: int,
    law_name: str | None,
    tokens: int | None,
    metric: str,
    precisions: list[str] | None,
    limits: dict[str, float | None],
    model_for: ModelFor,
    out_path: Path,
) -> Selection:
    """K candidates spread along and near the predicted frontier, far from what is already measured; before
    any loss-law fit, −log(active params) stands in for the loss."""
    if k < 1:
        raise InputError("k", f"must be at least 1, got {k}")
    law = law_fit(store, law_name) if law_name or store.fits.get() else None
    s = score(space, d, law, tokens, metric, precisions, limits, model_for)
    measured = [r.arch for r in store.runs.find()] + [r.arch for r in store.profiles.find(status="ok")]
    picks = select(s.latency, s.loss, s.feasible, s.features, measured_features(measured), k)
    if not len(picks):
        raise InputError("space", f"no candidate of {space} is feasible on {d.name} under the given budgets")
    rows = [s.row(i) for i in picks]
    names = [f"{space.stem}-{r['index']}" for r in rows]
    jobs = [
        {"architecture": r["architecture"] | {"name": n}, "tokens": int(r["tokens"]), "precision": r["precision"]}
        for r, n in zip(rows, names, strict=True)
    ]
    write_queue(out_path, jobs, f"cobench select --space {space} --device {d.name} --k {k}")
    return Selection(out_path, rows, names, int(s.feasible.sum()), law is not None)
