"""`cobench kernels run|roofline`: kernel microbenchmarks and the empirical roofline."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated

import typer

from cobench.cli.common import (
    DevicesPathOpt,
    JsonOpt,
    ModeOpt,
    StoreOpt,
    app,
    handles_errors,
    open_store,
)
from cobench.devices import get_device
from cobench.errors import InputError
from cobench.kernels import KERNEL_HARNESS
from cobench.precision import PRECISIONS
from cobench.render import emit_json, err, ms, out, si, table

kernels_app = typer.Typer(help="Kernel microbenchmarks and the device's empirical roofline.", no_args_is_help=True)
app.add_typer(kernels_app, name="kernels")
KernelsPathOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--kernels-path", help="Extra kernel suite YAML file or folder (repeatable) [env COBENCH_KERNELS_PATH]."
    ),
]


@kernels_app.command("run")
@handles_errors
def kernels_run(
    suite: Annotated[list[str] | None, typer.Argument(help="Suites to run (default: all in kernels/).")] = None,
    device: Annotated[str, typer.Option("--device", "-d", help="Catalogue device this machine is.")] = "cpu",
    power_mode: ModeOpt = None,
    backend: Annotated[
        str,
        typer.Option("--backend", help="torch (CPU or CUDA), ort (CPU provider) or trt (TensorRT on CUDA)."),
    ] = "torch",
    runner_device: Annotated[
        str | None, typer.Option("--runner-device", help="cpu or cuda [default: cpu on a cpu device, else cuda].")
    ] = None,
    warm: Annotated[
        bool, typer.Option("--warm", help="Warm cache (default: cold, rotating buffers > 2x LLC).")
    ] = False,
    precision: Annotated[
        list[str] | None,
        typer.Option(
            "--precision", help="Only these precisions (repeatable) [default: those the device runs natively]."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Measure again kernels already in the store.")] = False,
    from_space: Annotated[
        Path | None,
        typer.Option("--from-space", help="Also the GEMM/GEMV/attention/... shapes a search space's candidates use."),
    ] = None,
    max_time_s: Annotated[
        float, typer.Option("--max-time-s", help="Maximum timed duration per kernel, seconds.")
    ] = KERNEL_HARNESS.max_time_s,
    store: StoreOpt = None,
    devices_path: DevicesPathOpt = None,
    kernels_path: KernelsPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Time the kernel suites (GEMM, GEMV, attention, element-wise, gather, copy/triad) on this machine."""
    from cobench.kernels import KERNEL_BACKENDS, last_level_cache_bytes, load_suites, native_precisions, run_kernel
    from cobench.kernels_onnx import ONNX_KINDS
    from cobench.runners import check_available
    from cobench.store import content_id

    if backend not in KERNEL_BACKENDS:
        raise InputError("backend", f"kernel suites run on {', '.join(KERNEL_BACKENDS)}, not {backend!r}")
    d = get_device(device, power_mode, devices_path)
    where = {"ort": "cpu", "trt": "cuda"}.get(backend) or runner_device or ("cpu" if d.kind == "cpu" else "cuda")
    if runner_device and runner_device != where:
        raise InputError("runner_device", f"{backend} kernels run on {where} (other GPUs/CPUs: --backend torch)")
    check_available(backend, where)
    native = native_precisions(where)
    every = load_suites(suite, kernels_path, from_space)
    if backend != "torch":
        every = [s for s in every if s.kind in ONNX_KINDS and s.precision != "bf16"]
    specs = [s for s in every if s.precision in (precision or native)]
    if not specs:
        raise InputError("precision", f"no kernel of the chosen suites runs in {', '.join(precision or native)}")
    skipped = sorted({s.precision for s in every} - set(precision or native))
    if skipped and not json_out:
        err.print(f"note: skipping {', '.join(skipped)} (emulated on this {where}); ask for it with --precision")
    if not max_time_s > 0:
        raise InputError("max_time_s", f"must be positive, got {max_time_s}")
    cfg = replace(KERNEL_HARNESS, max_time_s=max_time_s, min_time_s=min(KERNEL_HARNESS.min_time_s, max_time_s))
    llc = last_level_cache_bytes(where)
    rows = []
    with open_store(store) as db:
        device_id = db.put_device(d.name, d.mode, asdict(d))
        for i, spec in enumerate(specs, 1):
            key = content_id([device_id, backend, where, asdict(spec), not warm])
            if db.has_kernel(key) and not force:
                continue
            r = run_kernel(spec, where, cold=not warm, cfg=cfg, cache_bytes=llc, backend=backend)
            db.put_kernel(
                {
                    "key": key,
                    "device_id": device_id,
                    "backend": backend,
                    "runner_device": where,
                    "suite": spec.suite,
                    "kind": spec.kind,
                    "shape": spec.shape,
                    "precision": spec.precision,
                    "cold": not warm,
                    "flops": r.flops,
                    "bytes": r.bytes,
                    "median_s": r.median_s,
                    "summary": r.summary,
                    "environment": {"llc_bytes": llc},
                }
            )
            if not json_out:
                err.print(f"[{i}/{len(specs)}] {spec.suite} {spec.label} {spec.precision}: {ms(r.median_s)}")
        rows = [r for r in db.kernels(d.name) if r["suite"] in {s.suite for s in specs} and r["backend"] == backend]
    for r in rows:
        r["flops_per_s"], r["bytes_per_s"] = r["flops"] / r["median_s"], r["bytes"] / r["median_s"]
        peak = d.peak_flops(PRECISIONS[r["precision"]].matmul_peaks)
        r["fraction_of_spec"] = max(r["flops_per_s"] / peak, r["bytes_per_s"] / d.bandwidth_bytes_s)
    if json_out:
        return emit_json(rows)
    out.print(
        table(
            f"kernels on {d.name} ({'warm' if warm else 'cold'} cache; LLC {si(llc, 'B')})",
            ["suite", "kernel", "prec", "median", "FLOP/s", "GB/s", "FLOP/B", "of spec", "CV"],
            [
                [
                    r["suite"],
                    f"{r['kind']} " + ",".join(f"{k}={v}" for k, v in r["shape"].items()),
                    r["precision"],
                    ms(r["median_s"]),
                    si(r["flops_per_s"]),
                    f"{r['bytes_per_s'] / 1e9:.3g}",
                    f"{r['flops'] / r['bytes']:.3g}" if r["bytes"] else "—",
                    f"{r['fraction_of_spec']:.0%}",
                    f"{r['summary']['cv']:.1%}",
                ]
                for r in rows
            ],
            right={3, 4, 5, 6, 7, 8},
        )
    )
    return None


@kernels_app.command("roofline")
@handles_errors
def kernels_roofline(
    device: Annotated[str, typer.Option("--device", "-d", help="Catalogue device whose kernels to use.")] = "cpu",
    power_mode: ModeOpt = None,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Figure path without suffix (.png and .svg).")] = Path(
        "out/roofline"
    ),
    store: StoreOpt = None,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Measured ceilings (best GEMM per precision, best copy/triad) and the empirical roofline plot."""
    from cobench.kernels import ceilings, from_row
    from cobench.roofline_plot import plot

    d = get_device(device, power_mode, devices_path)
    with open_store(store) as db:
        rows = db.kernels(d.name)
    if not rows:
        raise InputError(
            "device", f"no kernel results for {d.name} in the store: run `cobench kernels run -d {d.name}`"
        )
    results = [from_row(r) for r in rows]
    c = ceilings(results)
    target = out_path.with_name(f"{out_path.name}-{d.name}")
    figures = plot(d, results, c, target)
    summary = {
        "device": d.name,
        "measured_flops_per_s": c.flops_per_s,
        "measured_bytes_per_s": c.bytes_per_s,
        "spec_flops_per_s": {p: d.peak_flops(PRECISIONS[p].matmul_peaks) for p in c.flops_per_s},
        "spec_bytes_per_s": d.bandwidth_bytes_s,
        "figures": [str(f) for f in figures],
        "kernels": len(results),
    }
    if json_out:
        return emit_json(summary)
    out.print(
        table(
            f"ceilings of {d.name}: measured vs spec",
            ["ceiling", "measured", "spec", "measured/spec"],
            [
                *[
                    [
                        f"{p} matmul",
                        si(v, "FLOP/s"),
                        si(summary["spec_flops_per_s"][p], "FLOP/s"),
                        f"{v / summary['spec_flops_per_s'][p]:.0%}",
                    ]
                    for p, v in c.flops_per_s.items()
                ],
                [
                    "memory bandwidth",
                    si(c.bytes_per_s or 0, "B/s"),
                    si(d.bandwidth_bytes_s, "B/s"),
                    f"{(c.bytes_per_s or 0) / d.bandwidth_bytes_s:.0%}",
                ],
            ],
            right={1, 2, 3},
        )
    )
    err.print(f"wrote {', '.join(summary['figures'])}")
    return None
