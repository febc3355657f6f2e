"""`cobench export` and `cobench profile`: measure candidates on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cobench.arch.queue import read_queue
from cobench.arch.spec import load_architecture
from cobench.arch.workload import Workload
from cobench.cli.app import app, handles_errors
from cobench.cli.options import (
    STORE_DEFAULT,
    ArchOpt,
    BatchOpt,
    CacheOpt,
    DevicesPathOpt,
    GenerateOpt,
    JsonOpt,
    ModeOpt,
    PromptOpt,
    RayOpt,
    StoreOpt,
    UncalibratedOpt,
    model_chooser,
    workload_from_options,
)  # fmt: skip
from cobench.cli.render import emit_json, err, out, table
from cobench.errors import IncompleteRun, InputError
from cobench.hardware.devices import get_device
from cobench.measure.result import Measured, ProfileResult
from cobench.report.format import ms, pct, si
from cobench.store import Store

TELEMETRY = ("auto", "jetson", "nvml", "cpu", "off")


@app.command("export")
@handles_errors
def export_cmd(
    arch: Annotated[list[str], typer.Option("--arch", "-a", metavar="SPEC", help="Architecture SPEC (repeatable).")],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Folder for <arch>-<precision>/{prefill,decode}.onnx.")
    ],
    precision: Annotated[
        list[str] | None,
        typer.Option(
            "--precision",
            metavar="TYPE",
            help="fp32, fp16 or int8 (ORT dynamic quantisation); repeatable [default: fp32].",
        ),
    ] = None,
    cache_dir: CacheOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export prefill and decode ONNX graphs (validated against torch), reusing the content-addressed cache."""
    from cobench.measure.export import export_to

    rows = export_to([load_architecture(s) for s in arch], precision or ["fp32"], out_dir, cache_dir)
    if json_out:
        return emit_json(rows)
    cells = [
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
    ]
    columns = ["arch", "precision", "folder", "cached", "prefill err", "decode err", "size"]
    out.print(table("exported (error = |ORT - torch| / std(logits))", columns, cells))
    return None


@app.command("profile")
@handles_errors
def profile_cmd(
    arch: ArchOpt = None,
    from_sweep: Annotated[
        str | None, typer.Option("--from-sweep", metavar="ID", help="Profile the top candidates of a stored sweep.")
    ] = None,
    queue: Annotated[
        Path | None,
        typer.Option(
            "--queue",
            metavar="FILE",
            help="Profile the architectures of a queue file (`cobench select`'s, or a study's: a job's own `prompt` and"
            " `batch` replace the command's), all in one interleaved run.",
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", "-k", metavar="N", help="With --from-sweep: how many candidates.")] = 5,
    sort: Annotated[
        str, typer.Option("--sort", metavar="COLUMN", help="With --from-sweep: ranking column ('-' = descending).")
    ] = "e2e_s",
    device: Annotated[
        str, typer.Option("--device", "-d", metavar="NAME", help="Catalogue device this machine is (for predictions).")
    ] = "cpu",
    power_mode: ModeOpt = None,
    backend: Annotated[
        list[str] | None,
        typer.Option("--backend", metavar="NAME", help="ort, torch or trt; repeatable [default: ort]."),
    ] = None,
    precision: Annotated[
        list[str] | None,
        typer.Option(
            "--precision",
            metavar="TYPE",
            help="Repeatable. ort: fp32, fp16, int8; torch: fp32, fp16, bf16; trt: fp32, fp16 [default: fp32].",
        ),
    ] = None,
    runner_device: Annotated[
        str | None,
        typer.Option(
            "--runner-device",
            metavar="WHERE",
            help="cpu, cuda, or tensorrt (ORT's TensorRT provider) [default: cpu on a cpu device, else cuda].",
        ),
    ] = None,
    batch: BatchOpt = None,
    prompt: PromptOpt = None,
    generate: GenerateOpt = None,
    context: Annotated[
        list[int] | None,
        typer.Option("--context", metavar="TOKENS", help="Extra decode context lengths to time (repeatable)."),
    ] = None,
    warmup_s: Annotated[float, typer.Option("--warmup-s", metavar="S", help="Warm-up per phase, seconds.")] = 0.5,
    min_iters: Annotated[
        int, typer.Option("--min-iters", metavar="N", help="Minimum timed iterations per phase.")
    ] = 10,
    min_time_s: Annotated[
        float, typer.Option("--min-time-s", metavar="S", help="Minimum timed duration per phase, seconds.")
    ] = 1.0,
    max_time_s: Annotated[
        float, typer.Option("--max-time-s", metavar="S", help="Maximum timed duration per phase, seconds.")
    ] = 10.0,
    target_ci: Annotated[
        float,
        typer.Option("--target-ci", metavar="PCT", help="Stop when the 95% CI of the median is within ± this, %."),
    ] = 1.0,
    telemetry: Annotated[
        str, typer.Option("--telemetry", metavar="SOURCE", help="auto, jetson, nvml, cpu or off.")
    ] = "auto",
    rate_hz: Annotated[float, typer.Option("--rate-hz", metavar="HZ", help="Telemetry sampling rate, Hz.")] = 20.0,
    idle_s: Annotated[
        float, typer.Option("--idle-s", metavar="S", help="Idle-power baseline before each candidate, seconds.")
    ] = 1.0,
    cooldown_s: Annotated[float, typer.Option("--cooldown-s", metavar="S", help="Pause between candidates, s.")] = 1.0,
    timeout_s: Annotated[float, typer.Option("--timeout-s", metavar="S", help="Per-candidate time limit, s.")] = 600.0,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            metavar="N",
            help="CPU threads for the runner [default: ort-genai and llama.cpp every usable CPU; ort one per"
            " physical core, torch its own: each runtime's choice, recorded].",
        ),
    ] = None,
    cuda_graphs: Annotated[
        bool, typer.Option("--cuda-graphs", help="torch on CUDA: replay decode as a CUDA graph.")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Measure again candidates that failed before.")
    ] = False,
    rounds: Annotated[
        int,
        typer.Option(
            "--rounds",
            metavar="N",
            help="Short rounds per candidate, interleaved in a random order across candidates; the result is the "
            "median of round medians, their spread its repeatability (the harness limits apply per round).",
        ),
    ] = 3,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Weights, prompt tokens and candidate order.")] = 0,
    uncalibrated: UncalibratedOpt = False,
    cache_dir: CacheOpt = None,
    store: StoreOpt = STORE_DEFAULT,
    devices_path: DevicesPathOpt = None,
    ray: RayOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Time candidates on this machine (prefill, decode, end-to-end) beside their predictions.

    Each candidate is exported, built and measured with telemetry in its own process; results are stored
    and a re-run skips what is done. With --ray, on the cluster's nodes that carry the device as a resource.
    """
    from cobench.cluster import connect
    from cobench.measure.profile import DEFAULT_CACHE, ProfileSettings, profile_backends, sweep_architecture
    from cobench.measure.timing import HarnessConfig

    d = get_device(device, power_mode, devices_path)
    if rounds < 1:
        raise InputError("rounds", f"must be at least 1, got {rounds}")
    if telemetry not in TELEMETRY:
        raise InputError("telemetry", f"one of {', '.join(TELEMETRY)}; got {telemetry!r}")
    harness = HarnessConfig(
        warmup_s=warmup_s,
        min_iters=min_iters,
        min_time_s=min_time_s,
        max_time_s=max_time_s,
        target_rel_ci=target_ci / 100,
    )
    settings = ProfileSettings(
        runner_device=runner_device or d.runner,
        workload=workload_from_options(Workload(), batch, prompt, generate, None, None),
        extra_contexts=tuple(context or ()),
        harness=harness,
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
        rounds=rounds,
    )
    cluster = connect(ray)
    with Store(store) as db:
        w = settings.workload
        archs = [(load_architecture(s), None) for s in arch or []]
        jobs = read_queue(queue) if queue else []  # a job's own batch and prompt replace the run's
        archs += [(j.arch, workload_from_options(w, j.batch, j.prompt, None, None, None)) for j in jobs]
        if from_sweep:
            sweep_id = db.sweeps.get(from_sweep)["id"]
            archs += [(sweep_architecture(c, from_sweep), None) for c in db.sweeps.candidates(sweep_id, sort, top)]
        chooser = lambda p, b: model_chooser(db, d, b, uncalibrated=uncalibrated)(p)  # noqa: E731
        progress, on_round = (None, None) if json_out else (_progress, _round)
        backends, precisions = backend or ["ort"], precision or ["fp32"]
        results = profile_backends(archs, backends, precisions, d, settings, db, chooser, progress, on_round, cluster)
    if json_out:
        emit_json([r.to_json() | _errors(r) for r in results])
    else:
        _print(results, d.name)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        names = ", ".join(f"{r.arch_name} {r.backend} {r.precision}" for r in failed[:5])
        raise IncompleteRun(
            f"{len(failed)} of {len(results)} candidates failed ({names}{', …' if len(failed) > 5 else ''});"
            " the others are stored. Fix the cause and rerun with --retry-failed"
        )
    return None


def _label(r: ProfileResult) -> str:
    return f"{r.arch_name} {r.backend} {r.precision} B={r.workload.batch} P={r.workload.prompt}"


def _progress(r: ProfileResult, done: int, total: int) -> None:
    err.print(f"[{done}/{total}] {_label(r)}: {r.status}" + (f" — {r.reason}" if r.reason else ""))


def _round(r: ProfileResult, round_: int, rounds: int, failure: str | None) -> None:
    extra = " (measured again)" if round_ >= rounds else ""
    err.print(f"  round {min(round_, rounds - 1) + 1}/{rounds}{extra}: {_label(r)}"
              + (f" — failed: {failure}" if failure else ""))  # fmt: skip


def _errors(r: ProfileResult) -> dict[str, float | None]:
    return {"ttft_error_pct": r.error_pct("ttft"), "tpot_error_pct": r.error_pct("tpot")}


def _measured(m: Measured | None, metric: str) -> str:
    """The measured median with its between-round spread (CV of the round medians) when there were rounds."""
    if m is None:
        return "—"
    spread = m.repeatability.get(metric)
    return ms(getattr(m, f"{metric}_s")) + (f" ±{spread:.0%}" if spread is not None else "")


def _print(results: list[ProfileResult], device: str) -> None:
    """One table; a run of several workloads (queue jobs of their own) gets a column saying each row's."""
    shape = lambda w: f"{w.batch}/{w.prompt}/{w.generate}"  # noqa: E731
    mixed = len({shape(r.workload) for r in results}) > 1
    columns = ["arch", *(["B/P/G"] if mixed else []), "backend", "prec", "status", "TTFT pred", "TTFT meas", "err",
               "TPOT pred", "TPOT meas", "err", "e2e meas", "J/token", "flags"]  # fmt: skip
    rows = []
    for r in results:
        m = r.measured
        rows.append([
            r.arch_name, *([shape(r.workload)] if mixed else []), r.backend, r.precision, r.status,
            ms(r.predicted["ttft_s"]), _measured(m, "ttft"), pct(r.error_pct("ttft")),
            ms(r.predicted["tpot_s"]), _measured(m, "tpot"), pct(r.error_pct("tpot")),
            ms(m.e2e_s) if m else "—",
            f"{m.energy_per_token_j:.3g}" if m and m.energy_per_token_j else "—",
            m.flags if m else (r.reason or "")[:60],
        ])  # fmt: skip
    w = None if mixed or not results else results[0].workload
    title = (
        f"profile on {device}{f' (B={w.batch}, P={w.prompt}, G={w.generate})' if w else ''}; measured (median of"
        " round medians ± their CV) vs predicted"
    )
    out.print(table(title, columns, rows, right={c + mixed for c in range(4, 12)}))
    for warning in dict.fromkeys(x for r in results if r.measured for x in r.measured.warnings):
        err.print(f"warning: {warning}")
    for model in dict.fromkeys(r.predicted.get("model") for r in results):
        err.print(f"predicted by: {model}")
