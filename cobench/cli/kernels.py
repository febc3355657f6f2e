"""`cobench kernels run|roofline`: kernel microbenchmarks and the empirical roofline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cobench.cli.app import app, handles_errors, typer_app
from cobench.cli.options import STORE_DEFAULT, DevicesPathOpt, JsonOpt, ModeOpt, StoreOpt
from cobench.cli.render import emit_json, err, out, table
from cobench.hardware.devices import get_device
from cobench.measure.kernels.results import KernelResult
from cobench.measure.kernels.run import KERNEL_HARNESS, KernelRun
from cobench.report.format import ms, si
from cobench.store import Store

kernels_app = typer_app("Kernel microbenchmarks and the device's empirical roofline.")
app.add_typer(kernels_app, name="kernels")
KernelsPathOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--kernels-path",
        metavar="PATH",
        help="Extra kernel suite YAML file or folder (repeatable); also COBENCH_KERNELS_PATH.",
    ),
]


@kernels_app.command("run")
@handles_errors
def kernels_run(
    suite: Annotated[
        list[str] | None, typer.Argument(metavar="[SUITE]...", help="Suites to run [default: all in kernels/].")
    ] = None,
    device: Annotated[
        str, typer.Option("--device", "-d", metavar="NAME", help="Catalogue device this machine is.")
    ] = "cpu",
    power_mode: ModeOpt = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend", metavar="NAME", help="torch (CPU or CUDA), ort (CPU provider) or trt (TensorRT on CUDA)."
        ),
    ] = "torch",
    runner_device: Annotated[
        str | None,
        typer.Option("--runner-device", metavar="WHERE", help="cpu or cuda [default: cpu on a cpu device, else cuda]."),
    ] = None,
    warm: Annotated[
        bool, typer.Option("--warm", help="Warm cache (default: cold, rotating buffers > 2x LLC).")
    ] = False,
    precision: Annotated[
        list[str] | None,
        typer.Option(
            "--precision",
            metavar="TYPE",
            help="Only these precisions (repeatable) [default: those the device runs natively].",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Measure again kernels already in the store.")] = False,
    from_space: Annotated[
        Path | None,
        typer.Option(
            "--from-space",
            metavar="FILE",
            help="Also the GEMM/GEMV/attention/... shapes a search space's candidates use.",
        ),
    ] = None,
    max_time_s: Annotated[
        float, typer.Option("--max-time-s", metavar="S", help="Maximum timed duration per kernel, seconds.")
    ] = KERNEL_HARNESS.max_time_s,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            metavar="N",
            help="ORT's intra-op threads [default: onnxruntime's, one per physical core]: match an engine that runs"
            " ORT's kernels inside it (ort-genai's `profile --threads`, default every usable CPU).",
        ),
    ] = None,
    store: StoreOpt = STORE_DEFAULT,
    devices_path: DevicesPathOpt = None,
    kernels_path: KernelsPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Time the kernel suites (GEMM, GEMV, attention, element-wise, gather, copy/triad) on this machine."""
    from cobench.measure.kernels.run import run_kernels

    d = get_device(device, power_mode, devices_path)

    def show(i: int, n: int, r: KernelResult) -> None:
        if not json_out:
            err.print(f"[{i}/{n}] {r.spec.suite} {r.spec.label} {r.spec.precision}: {ms(r.median_s)}")

    with Store(store) as db:
        run = run_kernels(
            d, backend, db, suite, runner_device, not warm, precision, force, from_space, max_time_s, kernels_path,
            progress=show, threads=threads,
        )  # fmt: skip
    if json_out:
        return emit_json(run)
    if run.skipped_precisions:
        err.print(
            f"note: skipped {', '.join(run.skipped_precisions)} (emulated on this {run.runner_device}); "
            "ask for it with --precision"
        )
    _print_run(run)
    return None


def _print_run(run: KernelRun) -> None:
    rows = [
        [
            r.spec.suite + ("" if r.cold or not run.cold else " (warm)"),
            f"{r.spec.kind} " + ",".join(f"{k}={v}" for k, v in r.spec.shape.items()),
            r.spec.precision,
            ms(r.median_s),
            si(r.flops_per_s),
            f"{r.bytes_per_s / 1e9:.3g}",
            f"{r.flops / r.bytes:.3g}" if r.bytes else "—",
            f"{run.fraction_of_spec(r):.0%}",
            f"{r.summary['cv']:.1%}",
        ]
        for r in run.results
    ]
    title = f"kernels on {run.device.name} ({'cold' if run.cold else 'warm'} cache; LLC {si(run.llc_bytes, 'B')})"
    columns = ["suite", "kernel", "prec", "median", "FLOP/s", "GB/s", "FLOP/B", "of spec", "CV"]
    out.print(table(title, columns, rows, right={3, 4, 5, 6, 7, 8}))


@kernels_app.command("roofline")
@handles_errors
def kernels_roofline(
    device: Annotated[
        str, typer.Option("--device", "-d", metavar="NAME", help="Catalogue device whose kernels to use.")
    ] = "cpu",
    power_mode: ModeOpt = None,
    out_path: Annotated[
        Path, typer.Option("--out", "-o", metavar="PATH", help="Figure path without suffix (.png and .svg).")
    ] = Path("out/roofline"),
    store: StoreOpt = STORE_DEFAULT,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Measured ceilings (best GEMM per precision, best copy/triad) and the empirical roofline plot."""
    from cobench.report.figures.roofline import empirical_roofline

    d = get_device(device, power_mode, devices_path)
    with Store(store, read_only=True) as db:  # it only reads: works on a read-only store
        r = empirical_roofline(db, d, out_path)
    if json_out:
        return emit_json(r)
    c = r.ceilings
    rows = [
        [f"{p} matmul", si(v, "FLOP/s"), si(r.spec_flops_per_s(p), "FLOP/s"), f"{v / r.spec_flops_per_s(p):.0%}"]
        for p, v in c.flops_per_s.items()
    ]
    bw = c.bytes_per_s or 0
    rows.append(["memory bandwidth", si(bw, "B/s"), si(d.bandwidth_bytes_s, "B/s"), f"{bw / d.bandwidth_bytes_s:.0%}"])
    out.print(
        table(
            f"ceilings of {d.name}: measured vs spec", ["ceiling", "measured", "spec", "measured/spec"], rows, {1, 2, 3}
        )
    )
    err.print(f"wrote {', '.join(str(f) for f in r.figures)}")
    return None
