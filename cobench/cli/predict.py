"""`cobench predict`: the roofline for one or more architectures on one or more devices."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from cobench.arch.spec import load_architecture
from cobench.arch.workload import Workload
from cobench.cli.app import app, handles_errors
from cobench.cli.options import (
    STORE_DEFAULT,
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
    workload_from_options,
)  # fmt: skip
from cobench.cli.render import emit_json, err, out, table
from cobench.errors import InputError
from cobench.hardware.devices import get_device
from cobench.predict.latency_model import resolve_model
from cobench.predict.predictions import Predicted, predict_all
from cobench.report.format import ms, si
from cobench.store import Store


@app.command("predict")
@handles_errors
def predict_cmd(
    arch: Annotated[list[str], typer.Option("--arch", "-a", metavar="SPEC", help="Architecture SPEC (repeatable).")],
    device: Annotated[
        list[str], typer.Option("--device", "-d", metavar="NAME", help="Device name or NAME@MODE (repeatable).")
    ],
    power_mode: ModeOpt = None,
    batch: BatchOpt = None,
    prompt: PromptOpt = None,
    generate: GenerateOpt = None,
    precision: PrecisionOpt = None,
    kv_precision: KvOpt = None,
    raw: RawOpt = False,
    ops: Annotated[
        bool, typer.Option("--ops/--no-ops", help="Per-operator breakdown (single arch and device).")
    ] = True,
    unfused_attention: Annotated[
        bool | None,
        typer.Option(
            "--unfused-attention/--fused-attention",
            help="Attention scores through memory, or flash-style fused [default: the calibration's, else fused].",
        ),
    ] = None,
    kv_update: Annotated[
        str | None,
        typer.Option(
            "--kv-update",
            metavar="HOW",
            help="append: KV written in place (engines); concat: the cache is copied each step "
            "(cobench's exported graphs) [default: the calibration's, else append].",
        ),
    ] = None,
    backend: ModelBackendOpt = None,
    calibration: CalibrationOpt = None,
    uncalibrated: UncalibratedOpt = False,
    store: StoreOpt = STORE_DEFAULT,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not record the prediction.")] = False,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Predicted TTFT, TPOT, end-to-end latency and peak memory, with the per-operator roofline."""
    w = workload_from_options(Workload(), batch, prompt, generate, precision, kv_precision)
    if kv_update not in (None, "append", "concat"):
        raise InputError("kv_update", f"append or concat, got {kv_update!r}")
    override: dict[str, Any] = {"kv_update": kv_update} if kv_update else {}
    if unfused_attention is not None:
        override["fused_attention"] = not unfused_attention
    archs = [load_architecture(s) for s in arch]
    devs = [get_device(n, power_mode, devices_path) for n in device]
    with Store(store) as db:
        result = predict_all(
            archs,
            devs,
            w,
            lambda d: resolve_model(db, d, w.precision, backend, calibration, raw, uncalibrated),
            override,
            None if no_store else db,
            ops,
        )
    if json_out:
        return emit_json(result)
    _print_predictions(result)
    if result.operators:
        _print_breakdown(result.operators, result.records[0])
    return None


def _interval(bounds: list[float] | None) -> str:
    return f" [{ms(bounds[0])}–{ms(bounds[1])}]" if bounds else ""


def _print_predictions(p: Predicted) -> None:
    w = p.workload
    title = (
        f"predicted: batch {w.batch}, prompt {w.prompt}, generate {w.generate}, {w.precision} weights, "
        f"{w.kv_precision} KV"
    )
    columns = ["arch", "device", "TTFT", "TPOT", "tok/s", "end-to-end", "prefill", "decode", "peak memory", "fits"]
    rows = [
        [
            r["arch"],
            r["device"] + (f"@{r['power_mode']}" if r["power_mode"] else ""),
            ms(r["ttft_s"]) + _interval(r["ttft_interval_s"]),
            ms(r["tpot_s"]) + _interval(r["tpot_interval_s"]),
            f"{r['decode_tokens_per_s']:.4g}",
            ms(r["e2e_s"]),
            r["prefill_bound"],
            r["decode_bound"],
            si(r["peak_memory_bytes"], "B"),
            "yes" if r["fits"] else Text("NO", "red"),
        ]
        for r in p.records
    ]
    out.print(table(title, columns, rows, right={2, 3, 4, 5, 8}))
    for model in dict.fromkeys(r["model"] for r in p.records):
        err.print(f"model: {model}")


def _print_breakdown(rows: list[dict[str, Any]], record: dict[str, Any]) -> None:
    columns = ["op", "class", "count", "FLOPs", "bytes", "weights", "KV", "FLOP/B", "bound", "time", "share"]
    after = {
        "tpot_refill_s": "the refill after the prompt",
        "tpot_release_s": "the release of the prompt's fresh logits",
    }
    adds = [f"{ms(record[k])} for {what}" for k, what in after.items() if record[k] > 0]
    extra = f"; TPOT adds per token {' and '.join(adds)}" if adds else ""
    for phase in ("prefill", "decode"):
        title = (
            "prefill (whole prompt)"
            if phase == "prefill"
            else f"decode (one step, mean over the generated tokens{extra})"
        )
        cells = [
            [
                r["name"],
                r["op_class"],
                r["count"],
                si(r["flops"]),
                si(r["bytes"], "B"),
                si(r["weight_bytes"], "B"),
                si(r["kv_bytes"], "B"),
                f"{r['intensity']:.3g}",
                r["bound"],
                ms(r["time_s"]),
                f"{r['share']:.1%}",
            ]
            for r in rows
            if r["phase"] == phase
        ]
        out.print(table(title, columns, cells, right={2, 3, 4, 5, 6, 7, 9, 10}))
