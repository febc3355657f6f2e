"""`cobench sweep`: predict a whole search space, vectorised, into the store."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cobench.arch.space import load_space
from cobench.cli.app import app, handles_errors
from cobench.cli.options import (
    STORE_DEFAULT,
    BatchOpt,
    CalibrationOpt,
    DeviceOpt,
    DevicesPathOpt,
    GenerateOpt,
    JsonOpt,
    KvOpt,
    ModelBackendOpt,
    ModeOpt,
    PrecisionOpt,
    PromptOpt,
    RawOpt,
    RayOpt,
    SpaceOpt,
    StoreOpt,
    UncalibratedOpt,
    workload_from_options,
)  # fmt: skip
from cobench.cli.render import Ticker, emit_json, err, out, table
from cobench.cluster import connect
from cobench.errors import InputError
from cobench.hardware.devices import get_device
from cobench.predict.latency_model import resolve_model
from cobench.report.format import mixers, ms, si
from cobench.search.sweep import MAX_CANDIDATES, SweepSummary, sweep
from cobench.store import Store


@app.command("sweep")
@handles_errors
def sweep_cmd(
    space: SpaceOpt,
    device: DeviceOpt,
    power_mode: ModeOpt = None,
    batch: BatchOpt = None,
    prompt: PromptOpt = None,
    generate: GenerateOpt = None,
    precision: PrecisionOpt = None,
    kv_precision: KvOpt = None,
    raw: RawOpt = False,
    top: Annotated[int, typer.Option("--top", "-k", metavar="N", help="Rows in the top-k table.")] = 10,
    sort: Annotated[
        str,
        typer.Option(
            "--sort",
            metavar="COLUMN",
            help="Column for the top-k table; prefix '-' for descending (e2e_s, ttft_s, tpot_s, -params_total, ...).",
        ),
    ] = "e2e_s",
    out_path: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="FILE", help="Also write every kept candidate to .csv or .json."),
    ] = None,
    backend: ModelBackendOpt = None,
    calibration: CalibrationOpt = None,
    uncalibrated: UncalibratedOpt = False,
    store: StoreOpt = STORE_DEFAULT,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
    max_candidates: Annotated[
        int,
        typer.Option("--max-candidates", metavar="N", min=1, help="Refuse a grid with more candidates than this."),
    ] = MAX_CANDIDATES,
    keep: Annotated[
        str | None,
        typer.Option(
            "--keep",
            metavar="all|best",
            help="Store every candidate meeting the constraints, or only the best: the top k by --sort and the "
            "latency–size frontier (any grid size). Default: all, best with --ray.",
        ),
    ] = None,
    ray: RayOpt = None,
) -> None:
    """Predict every candidate of a search space (vectorised), store them, show the top k. With --ray, chunks
    run on the cluster's CPUs and only the best come back."""
    if keep not in (None, "all", "best"):
        raise InputError("keep", f"must be all or best, got {keep!r}")
    best_only = keep == "best" or (keep is None and ray is not None)
    s = load_space(space)
    w = workload_from_options(s.workload, batch, prompt, generate, precision, kv_precision)
    s = replace(s, workload=w, source={**s.source, "workload": w.to_dict()})
    d = get_device(device, power_mode, devices_path)
    cluster = connect(ray)
    with (
        Store(store) as db,
        Progress(
            TextColumn("sweep {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("chunks"),
            TimeElapsedColumn(),
            console=err,
            disable=json_out or not err.is_terminal,
        ) as bar,
    ):
        task = bar.add_task(s.name, total=s.n_chunks)
        ticker = Ticker(f"sweep {s.name}", "chunks")  # when no live bar is shown (--json, a pipeline)
        live = not (json_out or not err.is_terminal)
        model = resolve_model(db, d, w.precision, backend, calibration, raw, uncalibrated)
        result = sweep(
            s, d, model, db, sort, top, out_path,
            lambda done, total: bar.update(task, completed=done) if live else ticker(done, total), max_candidates,
            best_only, cluster,
        )  # fmt: skip
    if json_out:
        return emit_json(result)
    _print(result)
    if out_path:
        err.print(f"wrote {out_path}")
    err.print(f"model: {model.describe}")
    return None


def _print(s: SweepSummary) -> None:
    r, w, d = s.result, s.space.workload, s.device
    rate = f", {s.candidates_per_s:,.0f} candidates/s" if s.candidates_per_s else ""
    stored = f", stored {r.stored:,} (top {s.k} by {s.sort} and the latency–size frontier)" if r.stored < r.kept else ""
    out.print(
        f"sweep {r.sweep_id}: grid {r.grid_size:,}, valid {r.valid:,}, kept {r.kept:,} "
        f"(constraints incl. memory fit){stored}; chunks run {r.chunks_run}, resumed/skipped {r.chunks_skipped}; "
        f"{r.seconds:.2f} s{rate}"
    )
    columns = ["#", "d_model", "layers", "mixers", "heads/kv", "hd", "d_ff", "vocab", "experts", "params", "active",
               "TTFT", "TPOT", "e2e", "memory"]  # fmt: skip
    rows = [
        [
            i + 1,
            c["d_model"],
            c["n_layers"],
            mixers(
                c["n_layers"],
                {k: c[f"n_{k}"] for k in ("sliding", "mla", "linear", "conv")},
                c["sliding_window"],
                c["kv_lora_rank"],
            ),  # fmt: skip
            f"{c['n_heads']}/{c['n_kv_heads']}",
            c["head_dim"],
            c["d_ff"] if not c["n_experts"] else (c["d_ff_shared"] * c["n_shared_experts"] or "—"),
            c["vocab_size"],
            f"{c['n_experts']}x{c['d_ff_expert']} top{c['top_k']}" if c["n_experts"] else "—",
            si(c["params_total"]),
            si(c["params_active"]),
            ms(c["ttft_s"]),
            ms(c["tpot_s"]),
            ms(c["e2e_s"]),
            si(c["peak_memory_bytes"], "B"),
        ]
        for i, c in enumerate(s.top)
    ]
    title = (
        f"top {s.k} by {s.sort} on {d.name}"
        f"{'@' + d.mode if d.mode else ''} (B={w.batch}, P={w.prompt}, G={w.generate}, {w.precision})"
    )
    out.print(table(title, columns, rows, right={0, 1, 2, 5, 6, 7, 9, 10, 11, 12, 13, 14}))
