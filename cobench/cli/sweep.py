"""`cobench sweep`: predict a whole search space, vectorised, into the store."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cobench.cli.common import (
    BatchOpt,
    CalibrationOpt,
    DevicesPathOpt,
    GenerateOpt,
    JsonOpt,
    KvOpt,
    ModelBackendOpt,
    ModeOpt,
    PrecisionOpt,
    PromptOpt,
    RawOpt,
    StoreOpt,
    UncalibratedOpt,
    app,
    handles_errors,
    latency_model,
    open_store,
    workload_from_options,
)
from cobench.devices import get_device
from cobench.render import emit_json, err, ms, out, si, table
from cobench.space import load_space
from cobench.store import export_rows
from cobench.sweep import run_sweep


@app.command("sweep")
@handles_errors
def sweep_cmd(
    space: Annotated[Path, typer.Option("--space", "-s", help="Search-space YAML (see spaces/demo.yaml).")],
    device: Annotated[str, typer.Option("--device", "-d", help="Device name or NAME@MODE.")],
    power_mode: ModeOpt = None,
    batch: BatchOpt = None,
    prompt: PromptOpt = None,
    generate: GenerateOpt = None,
    precision: PrecisionOpt = None,
    kv_precision: KvOpt = None,
    raw: RawOpt = False,
    top: Annotated[int, typer.Option("--top", "-k", help="Rows in the top-k table.")] = 10,
    sort: Annotated[
        str,
        typer.Option(
            "--sort",
            help="Column for the top-k table; prefix '-' for descending (e2e_s, ttft_s, tpot_s, -params_total, ...).",
        ),
    ] = "e2e_s",
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write every kept candidate to .csv or .json.")
    ] = None,
    backend: ModelBackendOpt = None,
    calibration: CalibrationOpt = None,
    uncalibrated: UncalibratedOpt = False,
    store: StoreOpt = None,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Predict every candidate of a search space (vectorised), store them, show the top k."""
    s = load_space(space)
    w = workload_from_options(s.workload, batch, prompt, generate, precision, kv_precision)
    s = replace(s, workload=w, source={**s.source, "workload": w.to_dict()})
    d = get_device(device, power_mode, devices_path)
    with open_store(store) as db:
        model = latency_model(db, d, w.precision, backend, calibration, raw, uncalibrated)
        params = model.params
        device_id = db.put_device(d.name, d.mode, asdict(d))
        show = not json_out and err.is_terminal
        with Progress(
            TextColumn("sweep {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("chunks"),
            TimeElapsedColumn(),
            console=err,
            disable=not show,
        ) as bar:
            task = bar.add_task(s.name, total=s.n_chunks)
            result = run_sweep(
                s, d, db, params, device_id, lambda done, _: bar.update(task, completed=done), model.counting
            )
        best = db.candidates(result.sweep_id, sort, top)
        if out_path:
            export_rows(db.candidates(result.sweep_id, sort), out_path)
    summary = asdict(result) | {
        "device": d.name,
        "power_mode": d.mode,
        "workload": w.to_dict(),
        "candidates_per_s": result.valid / result.seconds if result.chunks_run else None,
        "params_source": params.source,
        "calibration": model.calibration.label if model.calibration else None,
        "intervals": model.calibration.intervals if model.calibration else None,
        "model": model.describe,
        "top": best,
    }
    if json_out:
        return emit_json(summary)
    rate = f", {summary['candidates_per_s']:,.0f} candidates/s" if summary["candidates_per_s"] else ""
    out.print(
        f"sweep {result.sweep_id}: grid {result.grid_size:,}, valid {result.valid:,}, kept {result.kept:,} "
        f"(constraints incl. memory fit); chunks run {result.chunks_run}, resumed/skipped {result.chunks_skipped}; "
        f"{result.seconds:.2f} s{rate}"
    )
    out.print(
        table(
            f"top {top} by {sort} on {d.name}{'@' + d.mode if d.mode else ''} "
            f"(B={w.batch}, P={w.prompt}, G={w.generate}, {w.precision})",
            [
                "#",
                "d_model",
                "layers",
                "heads/kv",
                "hd",
                "d_ff",
                "vocab",
                "experts",
                "params",
                "active",
                "TTFT",
                "TPOT",
                "e2e",
                "memory",
            ],
            [
                [
                    i + 1,
                    c["d_model"],
                    c["n_layers"],
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
                for i, c in enumerate(best)
            ],
            right={0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13},
        )
    )
    if out_path:
        err.print(f"wrote {out_path}")
    err.print(f"model: {model.describe}")
    return None
