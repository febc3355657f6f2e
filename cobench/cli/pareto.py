"""`cobench pareto` and `cobench select`: predicted loss against predicted latency over a search space."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cobench.cli.app import app, handles_errors
from cobench.cli.options import (
    STORE_DEFAULT,
    DeviceOpt,
    DevicesPathOpt,
    JsonOpt,
    ModelBackendOpt,
    ModeOpt,
    SpaceOpt,
    StoreOpt,
    UncalibratedOpt,
    model_chooser,
)  # fmt: skip
from cobench.cli.render import emit_json, err, out, table
from cobench.hardware.devices import get_device
from cobench.report.format import mixers, ms, si
from cobench.search.analysis import Frontier, Selection, pareto, select_candidates
from cobench.search.scoring import Scoring, budgets
from cobench.store import Store

LawOpt = Annotated[
    str | None,
    typer.Option(
        "--law", metavar="ID|LAW", help="Loss-law fit: its id, or a law name for its newest fit [default: newest]."
    ),
]
TokensOpt = Annotated[
    int | None,
    typer.Option(
        "--tokens", metavar="N", help="Training tokens for every candidate [default: 20 per parameter, Chinchilla]."
    ),
]
MetricOpt = Annotated[
    str, typer.Option("--metric", metavar="NAME", help="Latency to trade against: e2e, ttft or tpot.")
]
MaxLatencyOpt = Annotated[float | None, typer.Option("--max-latency", metavar="MS", help="Latency budget, ms.")]
MaxMemoryOpt = Annotated[float | None, typer.Option("--max-memory", metavar="GB", help="Memory budget, GB.")]
MaxParamsOpt = Annotated[float | None, typer.Option("--max-params", metavar="N", help="Parameter budget (total).")]
PrecisionsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--precision", metavar="TYPE", help="Precision(s) as a design axis (repeatable) [default: the space's]."
    ),
]


def _arch_cells(r: dict[str, Any]) -> list[Any]:
    a = r["architecture"]
    kinds = a.get("layer_types") or []
    counts = {k: kinds.count(k) for k in ("sliding", "mla", "linear", "conv")}
    if a.get("kv_lora_rank") and not kinds:
        counts["mla"] = a["n_layers"]
    pattern = mixers(a["n_layers"], counts, a.get("sliding_window"), a.get("kv_lora_rank"))
    return [r["precision"], a["d_model"], a["n_layers"], pattern, f"{a['n_heads']}/{a['n_kv_heads']}"]


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
        float | None,
        typer.Option("--max-energy-per-token", metavar="J", help="Energy budget, J/token (TPOT × power cap)."),
    ] = None,
    reference: Annotated[
        str | None, typer.Option("--reference", metavar="SPEC", help="Architecture SPEC to beat at its own latency.")
    ] = None,
    top: Annotated[int, typer.Option("--top", "-k", metavar="N", help="Frontier rows to show.")] = 15,
    backend: ModelBackendOpt = None,
    uncalibrated: UncalibratedOpt = False,
    out_path: Annotated[Path, typer.Option("--out", "-o", metavar="PATH", help="Figure path without suffix.")] = Path(
        "out/pareto"
    ),
    store: StoreOpt = STORE_DEFAULT,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Predicted loss vs predicted latency for every candidate: frontier, feasible region, reference."""
    from cobench.report.figures.pareto import plot

    d = get_device(device, power_mode, devices_path)
    limits = budgets(max_latency_ms, max_memory_gb, max_params, max_energy)
    with Store(store) as db:
        models = model_chooser(db, d, backend, uncalibrated=uncalibrated)
        scoring = Scoring(space, d, law_fit, tokens, metric, precision, limits, models)
        f = pareto(db, scoring, reference, out_path, plot)
    if json_out:
        return emit_json(f)
    _print_frontier(f, top)
    err.print(f"latency: {f.summary['latency_model']}")
    err.print(f"wrote {', '.join(f.summary['figures'])}")
    return None


def _print_frontier(f: Frontier, top: int) -> None:
    s = f.summary
    rows = [
        [ms(r["latency_s"]), f"{r['loss']:.4f}", *_arch_cells(r), r["architecture"]["d_ff"],
         f"{r['architecture']['n_experts']}×top{r['architecture']['top_k']}" if r["architecture"]["n_experts"] else "—",
         si(r["params_total"]), si(r["peak_memory_bytes"], "B")]
        for r in s["frontier"][:top]
    ]  # fmt: skip
    title = (
        f"Pareto frontier on {f.device}: {s['feasible']:,} feasible of {s['candidates']:,} candidates "
        f"({s['metric']} latency vs predicted loss, {f.law} law)"
    )
    columns = [
        "latency",
        "loss",
        "prec",
        "d_model",
        "layers",
        "mixers",
        "heads/kv",
        "d_ff",
        "experts",
        "params",
        "memory",
    ]
    out.print(table(title, columns, rows, right={0, 1, 3, 4, 7, 9, 10}))
    r = s["reference"]
    if r and r["best"]:
        out.print(
            f"reference {r['arch']}: {ms(r['latency_s'])}, loss {r['loss']:.4f}; best candidate at ≤ its latency: "
            f"{ms(r['best']['latency_s'])}, loss {r['best']['loss']:.4f} ({r['loss_change']:+.4f} nats)"
        )
    elif r:
        out.print(f"reference {r['arch']}: {ms(r['latency_s'])}; no feasible candidate is as fast")


@app.command("select")
@handles_errors
def select_cmd(
    space: SpaceOpt,
    device: DeviceOpt,
    k: Annotated[int, typer.Option("--k", "-k", metavar="N", help="How many candidates to pick.")] = 5,
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
    out_path: Annotated[Path, typer.Option("--out", "-o", metavar="FILE", help="Queue file to write (YAML).")] = Path(
        "out/queue.yaml"
    ),
    store: StoreOpt = STORE_DEFAULT,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Pick K candidates worth profiling/training next: spread along and near the predicted frontier, far
    from what is already measured; write them as a queue for `profile --queue` and `train --queue`."""
    d = get_device(device, power_mode, devices_path)
    limits = budgets(max_latency_ms, max_memory_gb, max_params, None)
    with Store(store, read_only=True) as db:  # it only reads: works on a read-only store
        models = model_chooser(db, d, backend, uncalibrated=uncalibrated)
        if not json_out and not (law_fit or db.fits.get()):
            err.print("note: no loss-law fit yet: picking by latency and size (−log params stands in for the loss)")
        scoring = Scoring(space, d, law_fit, tokens, metric, precision, limits, models)
        s = select_candidates(db, scoring, k, out_path)
    if json_out:
        return emit_json(s)
    _print_selection(s)
    err.print(f"wrote {s.queue}: `cobench train --queue {s.queue}` / `cobench profile --queue {s.queue}`")
    return None


def _print_selection(s: Selection) -> None:
    rows = [
        [name, ms(r["latency_s"]), f"{r['loss']:.4f}" if s.has_law else "—", *_arch_cells(r), si(r["params_total"])]
        for name, r in zip(s.names, s.rows, strict=True)
    ]  # no law yet: the stand-in is not a loss
    title = f"selected {len(s.rows)} of {s.feasible:,} feasible candidates"
    columns = ["name", "latency", "loss", "prec", "d_model", "layers", "mixers", "heads/kv", "params"]
    out.print(table(title, columns, rows, right={1, 2, 4, 5, 8}))
