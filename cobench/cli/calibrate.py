"""`cobench calibrate`: fit the latency model to this device's kernels and profiled models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cobench.arch.precision import precision as check_precision
from cobench.cli.app import app, handles_errors
from cobench.cli.options import STORE_DEFAULT, DevicesPathOpt, JsonOpt, ModeOpt, StoreOpt
from cobench.cli.render import emit_json, err, out, table
from cobench.errors import InputError
from cobench.fit.calibration.calibrate import CalibrationRun
from cobench.fit.calibration.validation import error_rows
from cobench.hardware.devices import get_device
from cobench.predict.operators import OP_CLASSES
from cobench.predict.roofline import REFILL_DECAY
from cobench.report.format import pct, si
from cobench.store import Store


@app.command("calibrate")
@handles_errors
def calibrate_cmd(
    device: Annotated[
        str, typer.Option("--device", "-d", metavar="NAME", help="Catalogue device the profiles were taken on.")
    ] = "cpu",
    power_mode: ModeOpt = None,
    backend: Annotated[
        str, typer.Option("--backend", metavar="NAME", help="Backend whose profiles to fit: ort, torch or trt.")
    ] = "ort",
    precision: Annotated[
        str, typer.Option("--precision", metavar="TYPE", help="Precision whose profiles to fit.")
    ] = "fp32",
    arch: Annotated[
        list[str] | None,
        typer.Option("--arch", "-a", metavar="NAME", help="Fit only these profiled architectures (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", metavar="NAME", help="Leave these profiled architectures out (repeatable)."),
    ] = None,
    kernels: Annotated[
        bool, typer.Option("--kernels/--no-kernels", help="Use the device's kernel results from the store.")
    ] = True,
    folds: Annotated[int, typer.Option("--folds", metavar="N", help="Cross-validation folds (by architecture).")] = 5,
    curve: Annotated[bool, typer.Option("--curve/--no-curve", help="Compute the learning curve.")] = True,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Folds and learning-curve subsets.")] = 0,
    tier_from: Annotated[
        Path | None,
        typer.Option(
            "--tier-from",
            metavar="CALIBRATION.json",
            help="Hold the cache tier at this calibration's (same device), e.g. the fp32 one for a 4-bit calibration"
            " whose training models all fit in the cache; said when that tier was fitted from inside only too.",
        ),
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Folder for the calibration JSON and its figure.")
    ] = Path("out/calibration"),
    store: StoreOpt = STORE_DEFAULT,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Fit efficiencies and overheads on log latency (robust), cross-validate by architecture, and save a
    versioned calibration that predict, sweep and profile then use for this device, backend and precision."""
    from cobench.files import read_mapping
    from cobench.fit.calibration.calibrate import calibrate_from_store
    from cobench.fit.calibration.record import Calibration
    from cobench.measure.runners import BACKENDS
    from cobench.report.figures.calibration import plot

    if backend not in BACKENDS:
        raise InputError("backend", f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")
    check_precision(precision)
    d = get_device(device, power_mode, devices_path)
    source = Calibration.from_json(read_mapping(tier_from, "tier-from"), "tier-from") if tier_from else None
    with Store(store) as db:
        run = calibrate_from_store(
            db, d, backend, precision, out_dir, arch, exclude, kernels, folds, curve, seed, plot, source
        )
    if json_out:
        return emit_json(run)
    for note in run.notes:
        err.print(f"note: {note}")
    _print(run)
    c = run.calibration
    mode = f"@{d.mode}" if d.mode else ""
    err.print(f"saved calibration v{c.version} in the store and {run.file}; figure {run.figures[0]}")
    err.print(f"predict, sweep and profile now use it for {d.name}{mode} {precision} (--uncalibrated to opt out)")
    if run.noisy:
        names = ", ".join(run.noisy[:5]) + (" …" if len(run.noisy) > 5 else "")
        err.print(
            f"warning: {len(run.noisy)} of {run.n_models} profiles were noisy (a phase's CV > 2 %: {names}); "
            "the fit and its interval are only as good as the measurements"
        )
    for metric, floor in (c.report.get("repeatability_floor") or {}).items():
        if floor is not None:
            at = c.report["at_floor"][metric]
            err.print(
                f"{metric.upper()}: the profiles repeat within {floor:.1f} % (median CV of their round medians)"
                + ("; the model's cross-validated error is already at that floor: more fitting would fit noise"
                   if at else "")
            )  # fmt: skip
    if c.report["few_models"]:
        err.print(f"warning: only {run.n_models} profiled models; profile at least 5 for a trustworthy interval")
    return None


def _print(run: CalibrationRun) -> None:
    c = run.calibration
    report, p = c.report, c.params
    title = (
        f"calibration {c.device} {c.backend} {c.precision} v{c.version}: {run.n_models} models, "
        f"{run.n_kernels} kernels, {report['folds']}-fold CV by architecture"
    )
    columns = ["", "model", "MAPE", "median |err|", "max |err|", "within ±5%", "within ±10%"]
    out.print(table(title, columns, error_rows(report), right={2, 3, 4, 5, 6}))
    fitted = report.get("classes_fitted", OP_CLASSES)  # absent from calibrations stored before it: all shown
    rows = [
        [k, f"{p.compute_efficiency[k]:.3g}", f"{p.memory_efficiency[k]:.3g}", f"{p.op_overhead_s[k] * 1e6:.3g} µs"]
        for k in OP_CLASSES
        if k in fitted
    ] + [[f"step ({phase})", "", "", f"{v * 1e6:.3g} µs"] for phase, v in p.step_overhead_s.items()]
    columns = ["op class", "compute η", "memory η", "overhead per op"]
    out.print(table("fitted parameters (efficiencies relative to the device file's peaks)", columns, rows, {1, 2, 3}))
    unfitted = [k for k in OP_CLASSES if k not in fitted]
    if unfitted:
        out.print(f"not in these profiles or kernels, so at the defaults: {', '.join(unfitted)}")
    if p.cache_speedup > 1.0 and p.cache_bytes > 0:
        held = (c.report.get("cache_tier") or {}).get("from")
        how = f"held at {held}'s" if held else "fitted from the profiles and the warm `cache` kernels"
        out.print(
            f"cache tier: a pass whose working set fits about {si(p.cache_bytes, 'B')} reads it "
            f"×{p.cache_speedup:.2f} faster than memory ({how})"
        )
    if p.refill_reads > 0.01:
        out.print(
            f"refill: the decode steps after a prompt read what its activations evicted from the cache"
            f" {p.refill_reads:.2f}× again at memory speed, {1 - REFILL_DECAY:.0%} of it in the first step"
        )
    for metric, iv in c.intervals.items():
        if iv:
            out.print(
                f"{metric.upper()} {iv['level']:.0%} prediction interval: measured within "
                f"×{iv['low']:.3f} … ×{iv['high']:.3f} of the prediction (from {iv['n']} out-of-fold errors)"
            )
    if report["learning_curve"]:
        rows = [
            [r["models"], pct(r["ttft_mape"], signed=False), pct(r["tpot_mape"], signed=False), r["repeats"]]
            for r in report["learning_curve"]
        ]
        columns = ["models", "TTFT MAPE", "TPOT MAPE", "subsets"]
        out.print(table("learning curve: MAPE on models not used for fitting", columns, rows, {0, 1, 2, 3}))
