"""`cobench predict`: the roofline for one or more architectures on one or more devices."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Annotated, Any

import typer
from rich.text import Text

from cobench.architecture import Architecture, param_counts
from cobench.calibration import LatencyModel
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
from cobench.devices import DeviceSpec, get_device
from cobench.errors import InputError
from cobench.render import emit_json, err, ms, out, si, table
from cobench.roofline import Prediction, breakdown, predict
from cobench.spec import load_architecture
from cobench.workload import Workload


def prediction_record(a: Architecture, d: DeviceSpec, w: Workload, p: Prediction, m: LatencyModel) -> dict[str, Any]:
    """One candidate's prediction as data (index 0 of a 1-candidate Prediction), with its interval if known."""
    intervals = m.interval_fields(float(p.ttft_s[0]), float(p.tpot_s[0]))
    return {
        "arch": a.name,
        "device": d.name,
        "power_mode": d.mode,
        "workload": w.to_dict(),
        "ttft_s": float(p.ttft_s[0]),
        "tpot_s": float(p.tpot_s[0]),
        "e2e_s": float(p.e2e_s[0]),
        "decode_tokens_per_s": 1 / float(p.tpot_s[0]),
        "prefill_bound": "compute" if p.prefill.compute_bound[0] else "memory",
        "decode_bound": "compute" if p.decode.compute_bound[0] else "memory",
        "prefill_flops": float(p.prefill.flops[0]),
        "prefill_bytes": float(p.prefill.bytes[0]),
        "decode_flops_per_token": float(p.decode.flops[0]),
        "decode_bytes_per_token": float(p.decode.bytes[0]),
        "weight_bytes": float(p.weight_bytes[0]),
        "kv_cache_bytes": float(p.kv_cache_bytes[0]),
        "activation_bytes": float(p.activation_bytes[0]),
        "peak_memory_bytes": float(p.peak_memory_bytes[0]),
        "usable_memory_bytes": d.usable_memory_bytes,
        "fits": bool(p.fits[0]),
        "params_source": p.params_source,
        **intervals,
        "interval_level": m.calibration.intervals["ttft"]["level"] if intervals["ttft_interval_s"] else None,
        "calibration": m.calibration.label if m.calibration else None,
        "model": m.describe,
    }


@app.command("predict")
@handles_errors
def predict_cmd(
    arch: Annotated[list[str], typer.Option("--arch", "-a", help="Architecture SPEC (repeatable).")],
    device: Annotated[list[str], typer.Option("--device", "-d", help="Device name or NAME@MODE (repeatable).")],
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
            help="append: KV written in place (engines); concat: the cache is copied each step "
            "(cobench's exported graphs) [default: the calibration's, else append].",
        ),
    ] = None,
    backend: ModelBackendOpt = None,
    calibration: CalibrationOpt = None,
    uncalibrated: UncalibratedOpt = False,
    store: StoreOpt = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not record the prediction.")] = False,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Predicted TTFT, TPOT, end-to-end latency and peak memory, with the per-operator roofline."""
    w = workload_from_options(Workload(), batch, prompt, generate, precision, kv_precision)
    if kv_update not in (None, "append", "concat"):
        raise InputError("kv_update", f"append or concat, got {kv_update!r}")
    archs = [load_architecture(s) for s in arch]
    devs = [get_device(n, power_mode, devices_path) for n in device]
    records, details = [], []
    db = open_store(store)
    for d in devs:
        m = latency_model(db, d, w.precision, backend, calibration, raw, uncalibrated)
        counting = replace(
            m.counting,
            **{"kv_update": kv_update} if kv_update else {},
            **{"fused_attention": not unfused_attention} if unfused_attention is not None else {},
        )
        params = m.params
        for a in archs:
            p = predict(a, d, w, params, counting)
            rec = prediction_record(a, d, w, p, m)
            records.append(rec)
            if not no_store:
                counts = param_counts(a)
                arch_id = db.put_architecture(a.to_dict(), counts.total, counts.active)
                device_id = db.put_device(d.name, d.mode, asdict(d))
                db.put_prediction(arch_id, device_id, w.to_dict(), asdict(params), rec)
            if ops and len(archs) * len(devs) == 1:
                details = [asdict(r) for r in breakdown(a, d, w, params, counting)]
    db.close()
    if json_out:
        return emit_json(records[0] | {"operators": details} if details else records)
    _print_predictions(records, w)
    if details:
        _print_breakdown(details)
    return None


def _print_predictions(records: list[dict[str, Any]], w: Workload) -> None:
    title = (
        f"predicted: batch {w.batch}, prompt {w.prompt}, generate {w.generate}, {w.precision} weights, "
        f"{w.kv_precision} KV"
    )
    out.print(
        table(
            title,
            [
                "arch",
                "device",
                "TTFT",
                "TPOT",
                "tok/s",
                "end-to-end",
                "prefill",
                "decode",
                "peak memory",
                "fits",
            ],
            [
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
                for r in records
            ],
            right={2, 3, 4, 5, 8},
        )
    )
    for model in dict.fromkeys(r["model"] for r in records):
        err.print(f"model: {model}")


def _interval(bounds: list[float] | None) -> str:
    return f" [{ms(bounds[0])}–{ms(bounds[1])}]" if bounds else ""


def _print_breakdown(rows: list[dict[str, Any]]) -> None:
    for phase in ("prefill", "decode"):
        title = "prefill (whole prompt)" if phase == "prefill" else "decode (one step, mean over the generated tokens)"
        out.print(
            table(
                title,
                [
                    "op",
                    "class",
                    "count",
                    "FLOPs",
                    "bytes",
                    "weights",
                    "KV",
                    "FLOP/B",
                    "bound",
                    "time",
                    "share",
                ],
                [
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
                ],
                right={2, 3, 4, 5, 6, 7, 9, 10},
            )
        )
