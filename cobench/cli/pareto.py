"""`cobench pareto` and `cobench select`: predicted loss against predicted latency over a search space."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
import yaml

from cobench.architecture import ArchBatch, Architecture, param_counts
from cobench.cli.common import (
    DevicesPathOpt,
    JsonOpt,
    ModelBackendOpt,
    ModeOpt,
    StoreOpt,
    UncalibratedOpt,
    app,
    handles_errors,
    latency_model,
    open_store,
)
from cobench.devices import DeviceSpec, get_device
from cobench.errors import InputError
from cobench.render import emit_json, err, ms, out, si, table
from cobench.space import load_space
from cobench.spec import load_architecture
from cobench.store import Store

METRICS = ("e2e", "ttft", "tpot")
SpaceOpt = Annotated[Path, typer.Option("--space", "-s", help="Search-space YAML.")]
DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="Device name or NAME@MODE.")]
LawOpt = Annotated[
    str | None, typer.Option("--law", help="Loss-law fit: its id, or a law name for its newest fit [default newest].")
]
TokensOpt = Annotated[
    int | None,
    typer.Option(
        "--tokens", help="Training tokens for every candidate [default 20 per parameter, Chinchilla-optimal]."
    ),
]
MetricOpt = Annotated[str, typer.Option("--metric", help="Latency to trade against: e2e, ttft or tpot.")]
MaxLatencyOpt = Annotated[float | None, typer.Option("--max-latency", help="Latency budget, ms.")]
MaxMemoryOpt = Annotated[float | None, typer.Option("--max-memory", help="Memory budget, GB.")]
MaxParamsOpt = Annotated[float | None, typer.Option("--max-params", help="Parameter budget (total).")]
PrecisionsOpt = Annotated[
    list[str] | None,
    typer.Option("--precision", help="Precision(s) as a design axis (repeatable) [default: the space's]."),
]


@dataclass(frozen=True)
class Scored:
    """Every candidate × precision: architecture columns, predicted latency and loss, and the budgets."""

    batch: ArchBatch
    precision: np.ndarray
    tokens: np.ndarray
    latency: np.ndarray
    loss: np.ndarray
    memory: np.ndarray
    params: np.ndarray
    energy: np.ndarray  # J/token at the power budget (an upper bound)
    feasible: np.ndarray
    features: np.ndarray
    model: str


def _law(db: Store, which: str | None) -> Any:
    from cobench.loss_law import LawFit

    found = db.law_fit(which)
    if not found:
        raise InputError(
            "law", f"no loss-law fit {which or ''} in the store: run `cobench fit` first".replace("  ", " ")
        )
    return LawFit.from_json(found)


def features_of(batch: ArchBatch, tokens: np.ndarray) -> np.ndarray:
    """Architecture features that matter to both models: size, data, aspect ratio, KV sharing, FFN ratio, sparsity."""
    counts = param_counts(batch)
    return np.c_[
        np.log(np.maximum(counts.active, 1)),
        np.log(np.maximum(tokens, 1)),
        np.log(batch.d_model / batch.n_layers),
        batch.n_kv_heads / batch.n_heads,
        batch.d_ff / batch.d_model,
        np.where(batch.n_experts > 0, batch.top_k / np.maximum(batch.n_experts, 1), 1.0),
    ]


def score(
    db: Store,
    space_path: Path,
    d: DeviceSpec,
    law_fit: Any,
    tokens: int | None,
    metric: str,
    precisions: list[str] | None,
    budgets: dict[str, float | None],
    backend: str | None,
    uncalibrated: bool,
) -> Scored:
    from cobench.pareto import runs_of
    from cobench.roofline import predict

    if metric not in METRICS:
        raise InputError("metric", f"one of {', '.join(METRICS)}, got {metric!r}")
    s = load_space(space_path)
    parts: list[dict[str, Any]] = []
    described = []
    power = d.power_max_w.value if d.power_max_w else None
    if budgets.get("energy") is not None and power is None:
        raise InputError("max_energy_per_token", f"{d.name} has no power figure in its device file")
    for p in precisions or [s.workload.precision]:
        w = replace(s.workload, precision=p, kv_precision=None)
        m = latency_model(db, d, p, backend, uncalibrated=uncalibrated)
        described.append(m.describe)
        for _, _, batch in s.chunks():
            counts = param_counts(batch)
            d_tokens = np.full(len(batch), float(tokens)) if tokens else 20.0 * counts.active
            pred = predict(batch, d, w, m.params, m.counting)
            parts.append(
                {
                    "batch": batch,
                    "precision": np.full(len(batch), p),
                    "tokens": d_tokens,
                    "latency": {"e2e": pred.e2e_s, "ttft": pred.ttft_s, "tpot": pred.tpot_s}[metric],
                    # without a law (select before any training run): a monotone stand-in, −log(active params)
                    "loss": law_fit.predict(runs_of(batch, d_tokens)) if law_fit else -np.log(counts.active),
                    "memory": pred.peak_memory_bytes,
                    "params": counts.total.astype(float),
                    "energy": pred.tpot_s * (power or np.nan),
                    "fits": pred.fits,
                }
            )
    if not parts:
        raise InputError("space", f"{space_path} has no valid candidates")
    cat = {k: np.concatenate([x[k] for x in parts]) for k in parts[0] if k != "batch"}
    batch = ArchBatch(
        **{f.name: np.concatenate([getattr(x["batch"], f.name) for x in parts]) for f in fields(ArchBatch)}
    )
    feasible = cat["fits"].copy()
    limits = {"latency": cat["latency"], "memory": cat["memory"], "params": cat["params"], "energy": cat["energy"]}
    for key, limit in budgets.items():
        if limit is not None:
            feasible &= limits[key] <= limit
    return Scored(
        batch,
        cat["precision"],
        cat["tokens"],
        cat["latency"],
        cat["loss"],
        cat["memory"],
        cat["params"],
        cat["energy"],
        feasible,
        features_of(batch, cat["tokens"]),
        "; ".join(dict.fromkeys(described)),
    )


def _budgets(
    latency_ms: float | None, memory_gb: float | None, params: float | None, energy: float | None
) -> dict[str, float | None]:
    for name, v in (
        ("max_latency_ms", latency_ms),
        ("max_memory_gb", memory_gb),
        ("max_params", params),
        ("max_energy_per_token", energy),
    ):
        if v is not None and not v > 0:
            raise InputError(name, f"must be positive, got {v}")
    return {
        "latency": latency_ms / 1e3 if latency_ms else None,
        "memory": memory_gb * 1e9 if memory_gb else None,
        "params": params,
        "energy": energy,
    }


def _row(s: Scored, i: int) -> dict[str, Any]:
    a = s.batch.architecture(int(i), name=f"candidate-{i}")
    return {
        "index": int(i),
        "precision": str(s.precision[i]),
        "latency_s": float(s.latency[i]),
        "loss": float(s.loss[i]),
        "tokens": float(s.tokens[i]),
        "params_total": float(s.params[i]),
        "peak_memory_bytes": float(s.memory[i]),
        "energy_per_token_j": float(s.energy[i]) if np.isfinite(s.energy[i]) else None,
        "architecture": a.to_dict(),
    }


@app.command("pareto")
@handles_errors
def pareto_cmd(
    space: SpaceOpt,
    device: DeviceOpt,
    power_mode: ModeOpt = None,
    law_fit: LawOpt = None,
    tokens: TokensOpt = None,
    metric: MetricOpt = "e2e",
    precision: PrecisionsOpt = None,
    max_latency_ms: MaxLatencyOpt = None,
    max_memory_gb: MaxMemoryOpt = None,
    max_params: MaxParamsOpt = None,
    max_energy: Annotated[
        float | None, typer.Option("--max-energy-per-token", help="Energy budget, J/token (TPOT × power cap).")
    ] = None,
    reference: Annotated[
        str | None, typer.Option("--reference", help="Architecture SPEC to beat at its own latency.")
    ] = None,
    top: Annotated[int, typer.Option("--top", "-k", help="Frontier rows to show.")] = 15,
    backend: ModelBackendOpt = None,
    uncalibrated: UncalibratedOpt = False,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Figure path without suffix.")] = Path("out/pareto"),
    store: StoreOpt = None,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Predicted loss vs predicted latency for every candidate: frontier, feasible region, reference."""
    from cobench.pareto import at_reference, frontier, runs_of
    from cobench.pareto_plot import plot, sample
    from cobench.roofline import predict

    d = get_device(device, power_mode, devices_path)
    budgets = _budgets(max_latency_ms, max_memory_gb, max_params, max_energy)
    with open_store(store) as db:
        fit = _law(db, law_fit)
        s = score(db, space, d, fit, tokens, metric, precision, budgets, backend, uncalibrated)
        ref = None
        if reference:
            a = load_architecture(reference)
            counts = param_counts(a)
            base = load_space(space).workload
            w = replace(base, precision=(precision or [base.precision])[0], kv_precision=None)
            m = latency_model(db, d, w.precision, backend, uncalibrated=uncalibrated)
            pred = predict(a, d, w, m.params, m.counting)
            ref_latency = float({"e2e": pred.e2e_s, "ttft": pred.ttft_s, "tpot": pred.tpot_s}[metric][0])
            ref_tokens = float(tokens or 20 * counts.active)
            ref_loss = float(fit.predict(runs_of(ArchBatch.of([a]), np.array([ref_tokens])))[0])
            ref = (a.name, at_reference(s.latency, s.loss, s.feasible, ref_latency, ref_loss))
    feasible_front = np.flatnonzero(
        frontier(np.where(s.feasible, s.latency, np.inf), np.where(s.feasible, s.loss, np.inf)) & s.feasible
    )
    front_rows = [_row(s, i) for i in feasible_front[np.argsort(s.latency[feasible_front])]]
    summary: dict[str, Any] = {
        "device": d.name,
        "space": str(space),
        "metric": metric,
        "law": fit.law,
        "candidates": len(s.loss),
        "feasible": int(s.feasible.sum()),
        "frontier": front_rows,
        "budgets": budgets,
        "latency_model": s.model,
        "reference": None,
    }
    if ref:
        name, r = ref
        summary["reference"] = {
            "arch": name,
            "latency_s": r.latency,
            "loss": r.loss,
            "best": _row(s, r.best_index) if r.best_index is not None else None,
            "loss_change": r.loss_change,
        }
    shown = sample(len(s.loss))
    points = {
        "latency_s": s.latency[shown].tolist(),
        "loss": s.loss[shown].tolist(),
        "feasible": s.feasible[shown].tolist(),
    }
    front = {"latency_s": [r["latency_s"] for r in front_rows], "loss": [r["loss"] for r in front_rows]}
    title = f"Accuracy–latency trade-off on {d.name}: {len(s.loss):,} candidates ({fit.law} law)"
    figures = plot(
        s.latency[shown],
        s.loss[shown],
        s.feasible[shown],
        front,
        budgets,
        summary["reference"],
        metric,
        title,
        out_path,
    )
    summary["figures"] = [str(f) for f in figures]
    with open_store(store) as db:
        summary["id"] = db.put_analysis("pareto", d.name, summary | {"points": points, "front": front, "title": title})
    if json_out:
        return emit_json(summary)
    out.print(
        table(
            f"Pareto frontier on {d.name}: {summary['feasible']:,} feasible of {summary['candidates']:,} candidates "
            f"({metric} latency vs predicted loss, {fit.law} law)",
            ["latency", "loss", "prec", "d_model", "layers", "heads/kv", "d_ff", "experts", "params", "memory"],
            [
                [
                    ms(r["latency_s"]),
                    f"{r['loss']:.4f}",
                    r["precision"],
                    r["architecture"]["d_model"],
                    r["architecture"]["n_layers"],
                    f"{r['architecture']['n_heads']}/{r['architecture']['n_kv_heads']}",
                    r["architecture"]["d_ff"],
                    f"{r['architecture']['n_experts']}×top{r['architecture']['top_k']}"
                    if r["architecture"]["n_experts"]
                    else "—",
                    si(r["params_total"]),
                    si(r["peak_memory_bytes"], "B"),
                ]
                for r in front_rows[:top]
            ],
            right={0, 1, 3, 4, 6, 8, 9},
        )
    )
    if summary["reference"]:
        r = summary["reference"]
        if r["best"]:
            out.print(
                f"reference {r['arch']}: {ms(r['latency_s'])}, loss {r['loss']:.4f}; best candidate at ≤ its latency: "
                f"{ms(r['best']['latency_s'])}, loss {r['best']['loss']:.4f} ({r['loss_change']:+.4f} nats)"
            )
        else:
            out.print(f"reference {r['arch']}: {ms(r['latency_s'])}; no feasible candidate is as fast")
    err.print(f"latency: {s.model}")
    err.print(f"wrote {', '.join(summary['figures'])}")
    return None


@app.command("select")
@handles_errors
def select_cmd(
    space: SpaceOpt,
    device: DeviceOpt,
    k: Annotated[int, typer.Option("--k", "-k", help="How many candidates to pick.")] = 5,
    power_mode: ModeOpt = None,
    law_fit: LawOpt = None,
    tokens: TokensOpt = None,
    metric: MetricOpt = "e2e",
    precision: PrecisionsOpt = None,
    max_latency_ms: MaxLatencyOpt = None,
    max_memory_gb: MaxMemoryOpt = None,
    max_params: MaxParamsOpt = None,
    backend: ModelBackendOpt = None,
    uncalibrated: UncalibratedOpt = False,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Queue file to write (YAML).")] = Path("out/queue.yaml"),
    store: StoreOpt = None,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Pick K candidates worth profiling/training next: spread along and near the predicted frontier, far
    from what is already measured; write them as a queue for `profile --queue` and `train --queue`."""
    from cobench.pareto import select

    if k < 1:
        raise InputError("k", f"must be at least 1, got {k}")
    d = get_device(device, power_mode, devices_path)
    with open_store(store) as db:
        fit = _law(db, law_fit) if law_fit or db.law_fit() else None
        if fit is None and not json_out:
            err.print("note: no loss-law fit yet: picking by latency and size (−log params stands in for the loss)")
        s = score(
            db,
            space,
            d,
            fit,
            tokens,
            metric,
            precision,
            _budgets(max_latency_ms, max_memory_gb, max_params, None),
            backend,
            uncalibrated,
        )
        measured = [Architecture.from_dict(r["arch"]) for r in db.training_runs()]
        measured += [Architecture.from_dict(r["arch"]) for r in db.profiles() if r["status"] == "ok"]
    known = (
        features_of(ArchBatch.of(measured), 20.0 * param_counts(ArchBatch.of(measured)).active)
        if measured
        else np.zeros((0, s.features.shape[1]))
    )
    picks = select(s.latency, s.loss, s.feasible, s.features, known, k)
    if not len(picks):
        raise InputError("space", f"no candidate of {space} is feasible on {d.name} under the given budgets")
    rows = [_row(s, i) for i in picks]
    jobs = [
        {
            "architecture": r["architecture"] | {"name": f"{space.stem}-{r['index']}"},
            "tokens": int(r["tokens"]),
            "precision": r["precision"],
        }
        for r in rows
    ]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text(
        yaml.safe_dump(
            {"source": f"cobench select --space {space} --device {d.name} --k {k}", "jobs": jobs}, sort_keys=False
        )
    )
    tmp.replace(out_path)
    if json_out:
        return emit_json({"queue": str(out_path), "selected": rows})
    out.print(
        table(
            f"selected {len(rows)} of {int(s.feasible.sum()):,} feasible candidates",
            ["name", "latency", "loss", "prec", "d_model", "layers", "heads/kv", "params"],
            [
                [
                    j["architecture"]["name"],
                    ms(r["latency_s"]),
                    f"{r['loss']:.4f}" if fit else "—",  # no law yet: the stand-in is not a loss
                    r["precision"],
                    r["architecture"]["d_model"],
                    r["architecture"]["n_layers"],
                    f"{r['architecture']['n_heads']}/{r['architecture']['n_kv_heads']}",
                    si(r["params_total"]),
                ]
                for j, r in zip(jobs, rows, strict=True)
            ],
            right={1, 2, 4, 5, 7},
        )
    )
    err.print(f"wrote {out_path}: `cobench train --queue {out_path}` / `cobench profile --queue {out_path}`")
    return None
