"""The `cobench` command line: a thin shell over the pure core (architecture → operators → roofline).

Every command takes --json (data only on stdout). Errors are one line on stderr naming the field and
the problem, with a non-zero exit; --debug (or COBENCH_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cobench import __version__
from cobench.arch_summary import arch_summary
from cobench.architecture import Architecture, param_counts
from cobench.devices import DeviceSpec, catalogue, get_device
from cobench.errors import CobenchError, InputError
from cobench.operators import Counting
from cobench.precision import KV_PRECISIONS, PRECISIONS
from cobench.render import emit_json, err, kv_table, ms, out, si, table
from cobench.roofline import Prediction, RooflineParams, breakdown, predict
from cobench.space import load_space
from cobench.spec import load_architecture, presets
from cobench.store import Store, default_path, export_rows
from cobench.sweep import run_sweep
from cobench.workload import Workload

app = typer.Typer(
    help="Roofline latency modelling and on-device profiling for hardware co-design of small LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
arch_app = typer.Typer(
    help="Architectures: presets, cobench YAML/JSON files, Hugging Face config.json.", no_args_is_help=True
)
devices_app = typer.Typer(help="The device catalogue (devices/*.yaml plus your own).", no_args_is_help=True)
store_app = typer.Typer(help="The SQLite store: summary and export.", no_args_is_help=True)
app.add_typer(arch_app, name="arch")
app.add_typer(devices_app, name="devices")
app.add_typer(store_app, name="store")

F = TypeVar("F", bound=Callable[..., Any])
STATE = {"debug": os.environ.get("COBENCH_DEBUG") == "1"}
UNCALIBRATED = "uncalibrated roofline: error unknown until the device is profiled and calibrated"

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout (nothing else there).")]
StoreOpt = Annotated[
    Path | None, typer.Option("--store", help="SQLite store file [env COBENCH_STORE; default ./cobench.db].")
]
DevicesPathOpt = Annotated[
    list[Path] | None,
    typer.Option("--devices-path", help="Extra device YAML file or folder (repeatable) [env COBENCH_DEVICES_PATH]."),
]
ModeOpt = Annotated[
    str | None,
    typer.Option(
        "--power-mode",
        help="Jetson power mode (nvpmodel name, e.g. MAXN_SUPER); default: the catalogue's default.",
    ),
]
BatchOpt = Annotated[int | None, typer.Option("--batch", "-b", help="Sequences per forward pass [default 1].")]
PromptOpt = Annotated[
    int | None, typer.Option("--prompt", "-p", help="Prompt tokens, prefilled at once [default 1024].")
]
GenerateOpt = Annotated[int | None, typer.Option("--generate", "-g", help="Generated tokens [default 16].")]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help=f"Weights/compute: {', '.join(PRECISIONS)} (int8 = W8A8, int4 = W4A16) [default fp16].",
    ),
]
KvOpt = Annotated[
    str | None,
    typer.Option(
        "--kv-precision",
        help=f"KV-cache element type: {', '.join(KV_PRECISIONS)} [default fp16; fp32 for fp32].",
    ),
]
RawOpt = Annotated[
    bool,
    typer.Option(
        "--raw",
        help="Raw roofline: datasheet peaks at 100% efficiency, no overheads (the upper bound on speed).",
    ),
]


def handles_errors(fn: F) -> F:
    """Map domain errors to one stderr line and their exit code (traceback only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CobenchError as e:
            if STATE["debug"]:
                raise
            err.print(f"[red]error:[/red] {e}", markup=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted: everything committed so far is kept; run the same command again to resume")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    STATE["debug"] = debug or os.environ.get("COBENCH_DEBUG") == "1"
    if version:
        out.print(f"cobench {__version__}")
        raise typer.Exit()


def _workload(
    base: Workload,
    batch: int | None,
    prompt: int | None,
    generate: int | None,
    precision: str | None,
    kv: str | None,
) -> Workload:
    """Command-line values override the base workload (the defaults, or a search space's)."""
    values = base.to_dict()
    if precision is not None and kv is None and values["kv_precision"] in ("fp16", "fp32"):
        values["kv_precision"] = None  # re-derive the default KV type from the new precision
    overrides = {
        "batch": batch,
        "prompt": prompt,
        "generate": generate,
        "precision": precision,
        "kv_precision": kv,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Workload(**values)


def _params(device: DeviceSpec, raw: bool) -> RooflineParams:
    return RooflineParams.ideal() if raw else RooflineParams.for_device(device)


def _open_store(path: Path | None) -> Store:
    return Store(path or default_path())


# --- arch -------------------------------------------------------------------------------------------


@arch_app.command("show")
@handles_errors
def arch_show(
    spec: Annotated[str, typer.Argument(help="Preset name, cobench architecture YAML/JSON, or HF config.json.")],
    prompt: Annotated[int, typer.Option("--prompt", "-p", help="Context (tokens) for the per-token FLOPs.")] = 1024,
    json_out: JsonOpt = False,
) -> None:
    """Parameters, KV-cache and weight bytes, FLOPs per token and the per-layer operator list."""
    a = load_architecture(spec)
    s = arch_summary(a, prompt)
    if json_out:
        return emit_json(s)
    p = s["params"]
    published = ""
    if s["published_total"]:
        mark = "[green]matches[/green]" if s["matches_published"] else "[red]DIFFERS[/red]"
        published = f" — published {s['published_total']:,}: {mark}"
    out.print(f"[bold]{a.name}[/bold]  total {p['total']:,} params{published}")
    fields_ = [(k, v) for k, v in a.to_dict().items() if k != "name" and v not in (None, 0, False)]
    out.print(kv_table("architecture", fields_))
    out.print(
        kv_table(
            "parameters",
            [
                ("total", f"{p['total']:,}"),
                ("non-embedding", f"{p['non_embedding']:,}"),
                ("active per token", f"{p['active']:,}"),
                ("embedding (+ untied head)", f"{p['embedding']:,}"),
            ],
        )
    )
    out.print(
        table(
            "memory",
            ["type", "weights", "KV cache / token"],
            [
                [
                    k,
                    si(s["weight_bytes"][k], "B") if k in s["weight_bytes"] else "—",
                    si(s["kv_cache_bytes_per_token"][k], "B") if k in s["kv_cache_bytes_per_token"] else "—",
                ]
                for k in PRECISIONS
            ],
            right={1, 2},
        )
    )
    f = s["flops_per_token"]
    out.print(
        f"FLOPs per token: prefill {si(f['prefill'], 'FLOP')} (mean over {prompt} tokens), "
        f"decode {si(f['decode'], 'FLOP')} (at context {prompt}); 2 FLOPs per multiply-add, causal attention halved"
    )
    out.print(
        table(
            "operators (per occurrence; count = occurrences per forward; prefill of the whole prompt, one decode step)",
            ["op", "class", "count", "prefill FLOPs", "decode FLOPs", "decode weight reads (fp16)"],
            [
                [
                    o["name"],
                    o["class"],
                    o["count"],
                    si(o["prefill_flops"]),
                    si(o["decode_flops"]),
                    si(o["decode_weight_bytes_fp16"], "B"),
                ]
                for o in s["operators"]
            ],
            right={2, 3, 4, 5},
        )
    )
    return None


@arch_app.command("list")
@handles_errors
def arch_list(json_out: JsonOpt = False) -> None:
    """The presets, with their counts checked against the published totals."""
    rows = []
    for name, p in sorted(presets().items()):
        c = param_counts(p.arch)
        rows.append(
            {
                "name": name,
                "total": c.total,
                "active": c.active,
                "published_total": p.published_total,
                "matches_published": p.published_total == c.total if p.published_total else None,
                "d_model": p.arch.d_model,
                "n_layers": p.arch.n_layers,
                "n_heads": p.arch.n_heads,
                "n_kv_heads": p.arch.n_kv_heads,
                "n_experts": p.arch.n_experts,
                "source": p.source,
            }
        )
    if json_out:
        return emit_json(rows)
    out.print(
        table(
            "presets",
            ["name", "params", "active", "published", "d_model", "layers", "heads/kv", "experts"],
            [
                [
                    r["name"],
                    si(r["total"]),
                    si(r["active"]),
                    ("✓ " if r["matches_published"] else "✗ ") + f"{r['published_total']:,}"
                    if r["published_total"]
                    else "—",
                    r["d_model"],
                    r["n_layers"],
                    f"{r['n_heads']}/{r['n_kv_heads']}",
                    r["n_experts"] or "—",
                ]
                for r in rows
            ],
            right={1, 2, 3, 4, 5},
        )
    )
    return None


# --- devices ----------------------------------------------------------------------------------------


def _ridge(d: DeviceSpec, precision: str = "fp16") -> float:
    return d.peak_flops(PRECISIONS[precision].matmul_peaks) / d.bandwidth_bytes_s


@devices_app.command("list")
@handles_errors
def devices_list(devices_path: DevicesPathOpt = None, json_out: JsonOpt = False) -> None:
    """Every device with its headline ceilings (dense peaks)."""
    devices = catalogue(devices_path)
    rows = [
        {
            "name": d.name,
            "kind": d.kind,
            "display_name": d.display_name,
            "fp16_tflops": d.peak_flops(PRECISIONS["fp16"].matmul_peaks) / 1e12,
            "memory_bandwidth_gbps": d.memory_bandwidth_gbps.value,
            "memory_gb": d.memory_gb.value,
            "ridge_flop_per_byte": _ridge(d),
            "power_modes": [m.name for m in d.power_modes],
            "default_mode": d.default_mode,
        }
        for d in sorted(devices.values(), key=lambda d: (d.kind, d.name))
    ]
    if json_out:
        return emit_json(rows)
    out.print(
        table(
            "devices (dense peaks at the maximum mode)",
            ["name", "kind", "fp16 TFLOP/s", "GB/s", "memory GB", "ridge FLOP/B", "power modes"],
            [
                [
                    r["name"],
                    r["kind"],
                    f"{r['fp16_tflops']:.4g}",
                    f"{r['memory_bandwidth_gbps']:.4g}",
                    f"{r['memory_gb']:.4g}",
                    f"{r['ridge_flop_per_byte']:.0f}",
                    ", ".join(r["power_modes"]) or "—",
                ]
                for r in rows
            ],
            right={2, 3, 4, 5},
        )
    )
    return None


@devices_app.command("show")
@handles_errors
def devices_show(
    name: Annotated[str, typer.Argument(help="Device name (see `cobench devices list`), or NAME@MODE.")],
    power_mode: ModeOpt = None,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """All numbers of one device with their sources; derived values say how."""
    d = get_device(name, power_mode, devices_path)
    if json_out:
        return emit_json(d)
    out.print(f"[bold]{d.display_name}[/bold] ({d.name}, {d.kind}) — power mode: {d.mode or 'maximum'}; file {d.path}")
    quantities = [
        (k, getattr(d, k))
        for k in (
            "memory_gb",
            "memory_bandwidth_gbps",
            "l2_mb",
            "sm_count",
            "gpu_clock_mhz",
            "power_max_w",
            "power_min_w",
            "reserved_memory_gb",
        )
    ]
    quantities += [(f"peak_tflops.{k}", q) for k, q in d.peak_tflops.items()]
    out.print(
        table(
            "specification (tensor peaks dense; (?) = uncertain)",
            ["quantity", "value", "source", "derived"],
            [[k, f"{q.value:.4g}{' (?)' if q.uncertain else ''}", q.source, q.derived] for k, q in quantities if q],
            right={1},
        )
    )
    if d.power_modes:
        out.print(
            table(
                f"power modes (default {d.default_mode}); {d.modes_source}",
                ["mode", "id", "GPU MHz", "SMs", "GB/s", "budget W", "note"],
                [
                    [
                        m.name + (" (?)" if m.uncertain else ""),
                        m.id if m.id is not None else "—",
                        m.gpu_clock_mhz or "—",
                        m.sm_count or "—",
                        m.memory_bandwidth_gbps or "—",
                        m.power_budget_w or "—",
                        m.note,
                    ]
                    for m in d.power_modes
                ],
            )
        )
    r = RooflineParams.for_device(d)
    out.print(f"roofline defaults: {r.source}")
    out.print(f"ridge point (fp16 matmul): {_ridge(d):.0f} FLOP/byte")
    return None


# --- predict ----------------------------------------------------------------------------------------


def prediction_record(a: Architecture, d: DeviceSpec, w: Workload, p: Prediction) -> dict[str, Any]:
    """One candidate's prediction as data (index 0 of a 1-candidate Prediction)."""
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
        "error_estimate": None,
        "calibration": UNCALIBRATED,
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
        bool,
        typer.Option("--unfused-attention", help="Attention scores go through memory (no flash-style fusion)."),
    ] = False,
    kv_update: Annotated[
        str,
        typer.Option(
            "--kv-update",
            help="append: KV written in place (engines); concat: the cache is copied each step "
            "(cobench's exported graphs).",
        ),
    ] = "append",
    store: StoreOpt = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="Do not record the prediction.")] = False,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Predicted TTFT, TPOT, end-to-end latency and peak memory, with the per-operator roofline."""
    w = _workload(Workload(), batch, prompt, generate, precision, kv_precision)
    if kv_update not in ("append", "concat"):
        raise InputError("kv_update", f"append or concat, got {kv_update!r}")
    counting = Counting(fused_attention=not unfused_attention, kv_update=kv_update)
    archs = [load_architecture(s) for s in arch]
    devs = [get_device(n, power_mode, devices_path) for n in device]
    records, details = [], []
    db = None if no_store else _open_store(store)
    for d in devs:
        params = _params(d, raw)
        for a in archs:
            p = predict(a, d, w, params, counting)
            rec = prediction_record(a, d, w, p)
            records.append(rec)
            if db:
                counts = param_counts(a)
                arch_id = db.put_architecture(a.to_dict(), counts.total, counts.active)
                device_id = db.put_device(d.name, d.mode, asdict(d))
                db.put_prediction(arch_id, device_id, w.to_dict(), asdict(params), rec)
            if ops and len(archs) * len(devs) == 1:
                details = [asdict(r) for r in breakdown(a, d, w, params, counting)]
    if db:
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
                    ms(r["ttft_s"]),
                    ms(r["tpot_s"]),
                    f"{r['decode_tokens_per_s']:.4g}",
                    ms(r["e2e_s"]),
                    r["prefill_bound"],
                    r["decode_bound"],
                    si(r["peak_memory_bytes"], "B"),
                    "yes" if r["fits"] else "[red]NO[/red]",
                ]
                for r in records
            ],
            right={2, 3, 4, 5, 8},
        )
    )
    for source in dict.fromkeys(r["params_source"] for r in records):
        out.print(f"roofline parameters: {source}")
    err.print(f"note: {UNCALIBRATED}")


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


# --- sweep ------------------------------------------------------------------------------------------


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
    store: StoreOpt = None,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Predict every candidate of a search space (vectorised), store them, show the top k."""
    s = load_space(space)
    w = _workload(s.workload, batch, prompt, generate, precision, kv_precision)
    s = replace(s, workload=w, source={**s.source, "workload": w.to_dict()})
    d = get_device(device, power_mode, devices_path)
    params = _params(d, raw)
    with _open_store(store) as db:
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
            result = run_sweep(s, d, db, params, device_id, lambda done, _: bar.update(task, completed=done))
        best = db.candidates(result.sweep_id, sort, top)
        if out_path:
            export_rows(db.candidates(result.sweep_id, sort), out_path)
    summary = asdict(result) | {
        "device": d.name,
        "power_mode": d.mode,
        "workload": w.to_dict(),
        "candidates_per_s": result.valid / result.seconds if result.chunks_run else None,
        "params_source": params.source,
        "calibration": UNCALIBRATED,
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
    err.print(f"note: {UNCALIBRATED}")
    return None


# --- export and profile -----------------------------------------------------------------------------

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
    cache_dir: CacheOpt = None,
    store: StoreOpt = None,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export, build and time candidates on this machine (prefill, decode at several contexts, end-to-end),
    with telemetry, each in its own process; store and compare with the roofline prediction."""
    from cobench.profile import DEFAULT_CACHE, Outcome, ProfileSettings, error_pct, profile
    from cobench.runners import BACKENDS
    from cobench.timing import HarnessConfig

    d = get_device(device, power_mode, devices_path)
    w = _workload(Workload(), batch, prompt, generate, None, None)
    if telemetry not in ("auto", "jetson", "nvml", "cpu", "off"):
        raise InputError("telemetry", f"one of auto, jetson, nvml, cpu, off; got {telemetry!r}")
    with _open_store(store) as db:
        archs = [load_architecture(s) for s in arch or []]
        if from_sweep:
            sweep_id = db.sweep(from_sweep)["id"]
            archs += [_sweep_arch(c, from_sweep) for c in db.candidates(sweep_id, sort, top)]
        if not archs:
            raise InputError("arch", "give --arch SPEC (repeatable) or --from-sweep ID")
        outcomes: list[tuple[str, Outcome]] = []
        for b in backend or ["ort"]:
            if b not in BACKENDS:
                raise InputError("backend", f"unknown backend {b!r} (one of {', '.join(BACKENDS)})")
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
            params = RooflineParams.for_device(d)
            outcomes += [(b, o) for o in profile(candidates, d, settings, db, params, report)]
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
            f"profile on {d.name} (B={w.batch}, P={w.prompt}, G={w.generate}); predicted = {UNCALIBRATED}",
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


# --- kernels -----------------------------------------------------------------------------------------

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
    backend: Annotated[str, typer.Option("--backend", help="Kernel backend: torch.")] = "torch",
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
    store: StoreOpt = None,
    devices_path: DevicesPathOpt = None,
    kernels_path: KernelsPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Time the kernel suites (GEMM, GEMV, attention, element-wise, gather, copy/triad) on this machine."""
    from cobench.kernels import last_level_cache_bytes, load_suites, native_precisions, run_kernel
    from cobench.store import content_id

    if backend != "torch":
        raise InputError("backend", f"kernel suites run on torch only so far, not {backend!r}")
    d = get_device(device, power_mode, devices_path)
    where = runner_device or ("cpu" if d.kind == "cpu" else "cuda")
    native = native_precisions(where)
    every = load_suites(suite, kernels_path)
    specs = [s for s in every if s.precision in (precision or native)]
    if not specs:
        raise InputError("precision", f"no kernel of the chosen suites runs in {', '.join(precision or native)}")
    skipped = sorted({s.precision for s in every} - set(precision or native))
    if skipped and not json_out:
        err.print(f"note: skipping {', '.join(skipped)} (emulated on this {where}); ask for it with --precision")
    llc = last_level_cache_bytes(where)
    rows = []
    with _open_store(store) as db:
        device_id = db.put_device(d.name, d.mode, asdict(d))
        for i, spec in enumerate(specs, 1):
            key = content_id([device_id, backend, where, asdict(spec), not warm])
            if db.has_kernel(key) and not force:
                continue
            r = run_kernel(spec, where, cold=not warm, cache_bytes=llc)
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
        rows = [r for r in db.kernels(d.name) if r["suite"] in {s.suite for s in specs}]
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
    from cobench.kernels import KernelResult, KernelSpec, ceilings
    from cobench.roofline_plot import plot

    d = get_device(device, power_mode, devices_path)
    with _open_store(store) as db:
        rows = db.kernels(d.name)
    if not rows:
        raise InputError(
            "device", f"no kernel results for {d.name} in the store: run `cobench kernels run -d {d.name}`"
        )
    results = [
        KernelResult(
            KernelSpec(r["suite"], r["kind"], r["shape"], r["precision"]),
            r["flops"],
            r["bytes"],
            r["median_s"],
            r["summary"],
            bool(r["cold"]),
        )
        for r in rows
    ]
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


# --- doctor and store -------------------------------------------------------------------------------


@app.command("doctor")
@handles_errors
def doctor_cmd(json_out: JsonOpt = False) -> None:
    """What this machine has (Python stack, ONNX Runtime providers, TensorRT, NVML, Jetson) and what is missing."""
    from cobench.doctor import run

    checks = run()
    if json_out:
        return emit_json(checks)
    colour = {"ok": "green", "missing": "red", "warn": "yellow", "info": "blue"}
    out.print(
        table(
            "cobench doctor",
            ["check", "status", "detail", "needed for", "how to get it"],
            [
                [
                    c.name,
                    f"[{colour[c.status]}]{c.status}[/{colour[c.status]}]",
                    c.detail,
                    c.needed_for if c.status != "ok" else "",
                    c.fix if c.status != "ok" else "",
                ]
                for c in checks
            ],
        )
    )
    out.print("arch, devices, predict and sweep need only the core install; they work on any machine.")
    return None


@store_app.command("info")
@handles_errors
def store_info(store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Schema version, row counts and sweeps of the store."""
    with _open_store(store) as db:
        s = db.summary()
    if json_out:
        return emit_json(s)
    out.print(f"store {s['path']} (schema v{s['schema_version']})")
    out.print(table("rows", ["table", "rows"], [[k, f"{v:,}"] for k, v in s["rows"].items()], right={1}))
    out.print(
        table(
            "sweeps",
            ["id", "name", "status", "grid"],
            [[x["id"], x["name"], x["status"], f"{x['grid_size']:,}"] for x in s["sweeps"]],
        )
    )
    return None


@store_app.command("export")
@handles_errors
def store_export(
    sweep: Annotated[str, typer.Option("--sweep", help="Sweep id or name (latest of that name).")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Output file: .csv or .json.")],
    sort: Annotated[str, typer.Option("--sort", help="Column to order by; '-' prefix for descending.")] = "e2e_s",
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many rows.")] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export a sweep's candidates to CSV or JSON."""
    with _open_store(store) as db:
        sweep_id = db.sweep(sweep)["id"]
        rows = db.candidates(sweep_id, sort, limit)
    export_rows(rows, out_path)
    if json_out:
        return emit_json({"sweep_id": sweep_id, "rows": len(rows), "out": str(out_path)})
    err.print(f"wrote {len(rows):,} rows to {out_path}")
    return None


def main() -> None:
    """Console entry point (click maps its own usage errors to exit code 2)."""
    app()
