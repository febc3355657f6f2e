"""`cobench calibrate`: fit the latency model to this device's kernels and profiled models."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from cobench.calibration import error_rows
from cobench.cli.common import DevicesPathOpt, JsonOpt, ModeOpt, StoreOpt, app, handles_errors, open_store
from cobench.devices import get_device
from cobench.errors import InputError
from cobench.operators import OP_CLASSES
from cobench.precision import precision as check_precision
from cobench.render import emit_json, err, out, table
from cobench.runners import BACKENDS


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}%"


@app.command("calibrate")
@handles_errors
def calibrate_cmd(
    device: Annotated[str, typer.Option("--device", "-d", help="Catalogue device the profiles were taken on.")] = "cpu",
    power_mode: ModeOpt = None,
    backend: Annotated[
        str, typer.Option("--backend", help="Backend whose profiles to fit: ort, torch or trt.")
    ] = "ort",
    precision: Annotated[str, typer.Option("--precision", help="Precision whose profiles to fit.")] = "fp32",
    arch: Annotated[
        list[str] | None, typer.Option("--arch", "-a", help="Fit only these profiled architectures (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Leave these profiled architectures out (repeatable).")
    ] = None,
    kernels: Annotated[
        bool, typer.Option("--kernels/--no-kernels", help="Use the device's kernel results from the store.")
    ] = True,
    folds: Annotated[int, typer.Option("--folds", help="Cross-validation folds (by architecture).")] = 5,
    curve: Annotated[bool, typer.Option("--curve/--no-curve", help="Compute the learning curve.")] = True,
    seed: Annotated[int, typer.Option("--seed", help="Folds and learning-curve subsets.")] = 0,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the calibration JSON and its figure.")
    ] = Path("out/calibration"),
    store: StoreOpt = None,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Fit efficiencies and overheads on log latency (robust), cross-validate by architecture, and save a
    versioned calibration that predict, sweep and profile then use for this device, backend and precision."""
    from cobench.calibration import calibrate, profiled_from_rows, require_models
    from cobench.calibration_plot import plot
    from cobench.kernels import from_row

    if backend not in BACKENDS:
        raise InputError("backend", f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")
    check_precision(precision)
    if folds < 2:
        raise InputError("folds", f"cross-validation needs at least 2 folds, got {folds}")
    d = get_device(device, power_mode, devices_path)
    with open_store(store) as db:
        rows = [
            r
            for r in db.profiles()
            if r["status"] == "ok"
            and r["device"] == d.name
            and (r["power_mode"] or None) == d.mode
            and r["backend"] == backend
            and r["precision"] == precision
        ]
        names = {r["arch_name"] for r in rows}
        for field, wanted in (("arch", arch), ("exclude", exclude)):
            unknown = sorted(set(wanted or []) - names)
            if unknown:
                raise InputError(field, f"{unknown[0]!r} has no {backend} {precision} profile on {d.name} in the store")
        rows = [r for r in rows if (not arch or r["arch_name"] in arch) and r["arch_name"] not in (exclude or [])]
        models = profiled_from_rows(rows)
        require_models(models, f"{d.name} {backend} {precision}")
        stored = [r for r in db.kernels(d.name) if r["precision"] == precision] if kernels else []
        same_backend = [r for r in stored if r["backend"] == backend]
        kernel_rows = same_backend or stored
        if kernels and not kernel_rows and not json_out:
            err.print(
                f"note: no {precision} kernel results for {d.name}: fitting profiles only (`cobench kernels run`)"
            )
        elif kernel_rows and not same_backend and not json_out:
            err.print(f"note: no {backend} kernels stored; using {len(kernel_rows)} from {kernel_rows[0]['backend']}")
        if not json_out:
            err.print(f"fitting {len(models)} profiles and {len(kernel_rows)} kernels …")
        c = calibrate(models, [from_row(r) for r in kernel_rows], d, backend, precision, folds, curve, seed)
        version = db.put_calibration(c.to_json())
    c = replace(c, version=version)
    mode = f"@{d.mode}" if d.mode else ""
    stem = out_dir / f"{d.name}{mode}-{backend}-{precision}-v{version}"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = stem.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(c.to_json(), indent=1))
    tmp.replace(stem.with_suffix(".json"))
    figures = plot(c, stem.with_name(stem.name + "-parity"))
    summary = c.to_json() | {"file": str(stem.with_suffix(".json")), "figures": [str(f) for f in figures]}
    if json_out:
        return emit_json(summary)
    _print(c.to_json(), len(models), len(kernel_rows))
    err.print(f"saved calibration v{version} in the store and {stem.with_suffix('.json')}; figure {figures[0]}")
    err.print(f"predict, sweep and profile now use it for {d.name}{mode} {precision} (--uncalibrated to opt out)")
    noisy = [r["arch_name"] for r in rows if (r["summary"] or {}).get("noisy")]
    if noisy:
        err.print(
            f"warning: {len(noisy)} of {len(rows)} profiles were noisy (a phase's CV > 2 %: {', '.join(noisy[:5])}"
            f"{' …' if len(noisy) > 5 else ''}); the fit and its interval are only as good as the measurements"
        )
    if c.report["few_models"]:
        err.print(f"warning: only {len(models)} profiled models; profile at least 5 for a trustworthy interval")
    return None


def _print(c: dict[str, Any], n_models: int, n_kernels: int) -> None:
    report = c["report"]
    rows = error_rows(report)
    out.print(
        table(
            f"calibration {c['device']} {c['backend']} {c['precision']} v{c['version']}: {n_models} models, "
            f"{n_kernels} kernels, {report['folds']}-fold CV by architecture",
            ["", "model", "MAPE", "median |err|", "max |err|", "within ±5%", "within ±10%"],
            rows,
            right={2, 3, 4, 5, 6},
        )
    )
    p = c["params"]
    out.print(
        table(
            "fitted parameters (efficiencies relative to the device file's peaks)",
            ["op class", "compute η", "memory η", "overhead per op"],
            [
                [
                    k,
                    f"{p['compute_efficiency'][k]:.3g}",
                    f"{p['memory_efficiency'][k]:.3g}",
                    f"{p['op_overhead_s'][k] * 1e6:.3g} µs",
                ]
                for k in OP_CLASSES
            ]
            + [[f"step ({phase})", "", "", f"{v * 1e6:.3g} µs"] for phase, v in p["step_overhead_s"].items()],
            right={1, 2, 3},
        )
    )
    for metric, iv in c["intervals"].items():
        if iv:
            out.print(
                f"{metric.upper()} {iv['level']:.0%} prediction interval: measured within "
                f"×{iv['low']:.3f} … ×{iv['high']:.3f} of the prediction (from {iv['n']} out-of-fold errors)"
            )
    if report["learning_curve"]:
        out.print(
            table(
                "learning curve: MAPE on models not used for fitting",
                ["models", "TTFT MAPE", "TPOT MAPE", "subsets"],
                [
                    [r["models"], _pct(r["ttft_mape"]), _pct(r["tpot_mape"]), r["repeats"]]
                    for r in report["learning_curve"]
                ],
                right={0, 1, 2, 3},
            )
        )
