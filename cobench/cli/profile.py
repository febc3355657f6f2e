"""`cobench export` and `cobench profile`: measure candidates on this machine."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from cobench.architecture import Architecture
from cobench.cli.common import (
    BatchOpt,
    DevicesPathOpt,
    GenerateOpt,
    JsonOpt,
    ModeOpt,
    PromptOpt,
    StoreOpt,
    UncalibratedOpt,
    app,
    handles_errors,
    latency_model,
    open_store,
    workload_from_options,
)
from cobench.devices import get_device
from cobench.errors import InputError
from cobench.render import emit_json, err, ms, out, si, table
from cobench.spec import load_architecture, read_queue
from cobench.workload import Workload

CacheOpt = Annotated[
    Path | None, typer.Option("--cache-dir", help="Export/engine cache [env COBENCH_CACHE; default ./.cobench/cache].")
]


@app.command("export")
@handles_errors
def export_cmd(
    arch: Annotated[list[str], typer.Option("--arch", "-a", help="Architecture SPEC (repeatable).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for <arch>-<precision>/{prefill,decode}.onnx.")],
    precision: Annotated[
        list[str] | None,
        typer.Option("--precision", help="fp32, fp16 or int8 (ORT dynamic quantisation); repeatable [default fp32]."),
    ] = None,
    cache_dir: CacheOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export prefill and decode ONNX graphs (validated against torch), reusing the content-addressed cache."""
    from cobench.export import export
    from cobench.profile import DEFAULT_CACHE

    rows = []
    for spec in arch:
        a = load_architecture(spec)
        for p in precision or ["fp32"]:
            e = export(a, p, cache_dir or DEFAULT_CACHE)
            target = out_dir / f"{a.name}-{p}"
            target.mkdir(parents=True, exist_ok=True)
            for name in ("prefill.onnx", "decode.onnx", "meta.json"):
                shutil.copyfile(e.directory / name, target / name)
            rows.append(
                {
                    "arch": a.name,
                    "precision": p,
                    "key": e.key,
                    "out": str(target),
                    "cache_hit": e.meta["cache_hit"],
                    "validation": e.meta["validation"],
                    "sha256": e.meta["sha256"],
                    "bytes": e.meta["bytes"],
                }
            )
    if json_out:
        return emit_json(rows)
    out.print(
        table(
            "exported (error = |ORT - torch| / std(logits))",
            ["arch", "precision", "folder", "cached", "prefill err", "decode err", "size"],
            [
                [
                    r["arch"],
                    r["precision"],
                    r["out"],
                    "yes" if r["cache_hit"] else "no",
                    f"{r['validation']['prefill']:.2g}",
                    f"{r['validation']['decode']:.2g}",
                    si(sum(r["bytes"].values()), "B"),
                ]
                for r in rows
            ],
        )
    )
    return None


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:+.1f}%"


@app.command("profile")
@handles_errors
def profile_cmd(
    arch: Annotated[list[str] | None, typer.Option("--arch", "-a", help="Architecture SPEC (repeatable).")] = None,
    from_sweep: Annotated[
        str | None, typer.Option("--from-sweep", help="Profile the top candidates of a stored sweep.")
    ] = None,
    queue: Annotated[
        Path | None, typer.Option("--queue", help="Profile the architectures of a queue file (`cobench select`).")
    ] = None,
    top: Annotated[int, typer.Option("--top", "-k", help="With --from-sweep: how many candidates.")] = 5,
    sort: Annotated[
        str, typer.Option("--sort", help="With --from-sweep: ranking column ('-' = descending).")
    ] = "e2e_s",
    device: Annotated[
        str, typer.Option("--device", "-d", help="Catalogue device this machine is (for predictions).")
    ] = "cpu",
    power_mode: ModeOpt = None,
    backend: Annotated[
        list[str] | None, typer.Option("--backend", help="ort, torch or trt; repeatable [default ort].")
    ] = None,
    precision: Annotated[
        list[str] | None,
        typer.Option(
            "--precision",
            help="Repeatable. ort: fp32, fp16, int8; torch: fp32, fp16, bf16; trt: fp32, fp16 [default fp32].",
        ),
    ] = None,
    runner_device: Annotated[
        str | None,
        typer.Option(
            "--runner-device",
            help="cpu, cuda, or tensorrt (ORT's TensorRT provider) [default: cpu on a cpu device, else cuda].",
        ),
    ] = None,
    batch: BatchOpt = None,
    prompt: PromptOpt = None,
    generate: GenerateOpt = None,
    context: Annotated[
        list[int] | None, typer.Option("--context", help="Extra decode context lengths to time, tokens (repeatable).")
    ] = None,
    warmup_s: Annotated[float, typer.Option("--warmup-s", help="Warm-up duration per phase, seconds.")] = 0.5,
    min_iters: Annotated[int, typer.Option("--min-iters", help="Minimum timed iterations per phase.")] = 10,
    min_time_s: Annotated[float, typer.Option("--min-time-s", help="Minimum timed duration per phase, seconds.")] = 1.0,
    max_time_s: Annotated[
        float, typer.Option("--max-time-s", help="Maximum timed duration per phase, seconds.")
    ] = 10.0,
    target_ci: Annotated[
        float, typer.Option("--target-ci", help="Stop when the 95% CI of the median is within ± this, percent.")
    ] = 1.0,
    telemetry: Annotated[str, typer.Option("--telemetry", help="auto, jetson, nvml, cpu or off.")] = "auto",
    rate_hz: Annotated[float, typer.Option("--rate-hz", help="Telemetry sampling rate, Hz.")] = 20.0,
    idle_s: Annotated[
        float, typer.Option("--idle-s", help="Idle-power baseline before each candidate, seconds.")
    ] = 1.0,
    cooldown_s: Annotated[float, typer.Option("--cooldown-s", help="Pause between candidates, seconds.")] = 1.0,
    timeout_s: Annotated[float, typer.Option("--timeout-s", help="Per-candidate time limit, seconds.")] = 600.0,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for the runner [default: all].")] = None,
    cuda_graphs: Annotated[
        bool, typer.Option("--cuda-graphs", help="torch on CUDA: replay decode as a CUDA graph.")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Measure again candidates that failed before.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Weights, prompt tokens and candidate order.")] = 0,
    uncalibrated: UncalibratedOpt = False,
    cache_dir: CacheOpt = None,
    store: StoreOpt = None,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Time candidates on this machine (prefill, decode, end-to-end) beside their predictions.

    Each candidate is exported, built and measured with telemetry in its own process; results are stored
    and a re-run skips what is done.
    """
    from cobench.profile import DEFAULT_CACHE, Outcome, ProfileSettings, error_pct, profile
    from cobench.runners import BACKENDS, check_available
    from cobench.timing import HarnessConfig

    d = get_device(device, power_mode, devices_path)
    w = workload_from_options(Workload(), batch, prompt, generate, None, None)
    if telemetry not in ("auto", "jetson", "nvml", "cpu", "off"):
        raise InputError("telemetry", f"one of auto, jetson, nvml, cpu, off; got {telemetry!r}")
    with open_store(store) as db:
        archs = [load_architecture(s) for s in arch or []]
        archs += [a for a, _ in read_queue(queue)] if queue else []
        if from_sweep:
            sweep_id = db.sweep(from_sweep)["id"]
            archs += [_sweep_arch(c, from_sweep) for c in db.candidates(sweep_id, sort, top)]
        if not archs:
            raise InputError("arch", "give --arch SPEC (repeatable), --from-sweep ID or --queue FILE")
        outcomes: list[tuple[str, Outcome]] = []
        described: dict[str, None] = {}
        for b in backend or ["ort"]:
            if b not in BACKENDS:
                raise InputError("backend", f"unknown backend {b!r} (one of {', '.join(BACKENDS)})")
            check_available(b, runner_device or ("cpu" if d.kind == "cpu" else "cuda"))
            settings = ProfileSettings(
                backend=b,
                runner_device=runner_device or ("cpu" if d.kind == "cpu" else "cuda"),
                workload=w,
                extra_contexts=tuple(context or ()),
                e2e_min_iters=3,
                telemetry=telemetry,
                rate_hz=rate_hz,
                idle_s=idle_s,
                cooldown_s=cooldown_s,
                timeout_s=timeout_s,
                threads=threads,
                cuda_graphs=cuda_graphs,
                cache_dir=cache_dir or DEFAULT_CACHE,
                seed=seed,
                retry_failed=retry_failed,
                harness=HarnessConfig(
                    warmup_s=warmup_s,
                    min_iters=min_iters,
                    min_time_s=min_time_s,
                    max_time_s=max_time_s,
                    target_rel_ci=target_ci / 100,
                ),
            )
            for p in precision or ["fp32"]:
                _check_precision(b, p)

            def report(o: Outcome, done: int, total: int, b: str = b) -> None:
                if not json_out:
                    err.print(
                        f"[{done}/{total}] {o.arch} {b} {o.precision}: {o.status}"
                        + (f" — {o.reason}" if o.reason else "")
                    )

            candidates = [(a, p) for a in archs for p in (precision or ["fp32"])]
            models = {p: latency_model(db, d, p, b, uncalibrated=uncalibrated) for p in precision or ["fp32"]}
            outcomes += [(b, o) for o in profile(candidates, d, settings, db, models.__getitem__, report)]
            described |= {m.describe: None for m in models.values()}
    rows = [
        {
            "arch": o.arch,
            "backend": b,
            "precision": o.precision,
            "status": o.status,
            "reason": o.reason,
            "key": o.key,
            "predicted": o.predicted,
            "measured": o.measured,
            "ttft_error_pct": error_pct(o.predicted["ttft_s"], (o.measured or {}).get("ttft_s")),
            "tpot_error_pct": error_pct(o.predicted["tpot_s"], (o.measured or {}).get("tpot_s")),
        }
        for b, o in outcomes
    ]
    if json_out:
        return emit_json(rows)
    out.print(
        table(
            f"profile on {d.name} (B={w.batch}, P={w.prompt}, G={w.generate}); measured vs predicted",
            [
                "arch",
                "backend",
                "prec",
                "status",
                "TTFT pred",
                "TTFT meas",
                "err",
                "TPOT pred",
                "TPOT meas",
                "err",
                "e2e meas",
                "J/token",
                "flags",
            ],
            [
                [
                    r["arch"],
                    r["backend"],
                    r["precision"],
                    r["status"],
                    ms(r["predicted"]["ttft_s"]),
                    ms(r["measured"]["ttft_s"]) if r["measured"] else "—",
                    _pct(r["ttft_error_pct"]),
                    ms(r["predicted"]["tpot_s"]),
                    ms(r["measured"]["tpot_s"]) if r["measured"] else "—",
                    _pct(r["tpot_error_pct"]),
                    ms(r["measured"]["e2e_s"]) if r["measured"] else "—",
                    f"{r['measured']['energy_per_token_j']:.3g}"
                    if r["measured"] and r["measured"]["energy_per_token_j"]
                    else "—",
                    _flags(r["measured"]) if r["measured"] else (r["reason"] or "")[:60],
                ]
                for r in rows
            ],
            right={4, 5, 6, 7, 8, 9, 10, 11},
        )
    )
    for warning in dict.fromkeys(w_ for r in rows if r["measured"] for w_ in r["measured"]["warnings"]):
        err.print(f"warning: {warning}")
    for model in described:
        err.print(f"predicted by: {model}")
    return None


def _flags(m: dict[str, Any]) -> str:
    flags = [f"noisy:{','.join(m['noisy'])}"] if m["noisy"] else []
    if m.get("throttled"):
        flags.append("THROTTLED")
    return " ".join(flags) or "ok"


def _check_precision(backend: str, precision: str) -> None:
    allowed = {"ort": ("fp32", "fp16", "int8"), "torch": ("fp32", "fp16", "bf16"), "trt": ("fp32", "fp16")}[backend]
    if precision not in allowed:
        raise InputError("precision", f"backend {backend} runs {', '.join(allowed)}, not {precision!r}")


def _sweep_arch(candidate: dict[str, Any], sweep: str) -> Architecture:
    from cobench.architecture import ArchBatch

    cols = {f: np.asarray([candidate[f]]) for f in ArchBatch.__dataclass_fields__}
    return ArchBatch(**cols).architecture(0, name=f"{sweep}#{candidate['grid_index']}")
