"""Options shared by several commands, each with its unit, default and environment variable in the help.

Metavars name what a value is (N, MS, FILE, NAME); flags take none. Help is plain text (see app.py), so
`[default …]` and `[env …]` stay visible.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from cobench.arch.precision import KV_PRECISIONS, PRECISIONS
from cobench.arch.workload import Workload
from cobench.hardware.devices import DeviceSpec
from cobench.predict.latency_model import LatencyModel, resolve_model
from cobench.store import DEFAULT_PATH, STORE_ENV, Store

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout (nothing else there).")]
StoreOpt = Annotated[
    Path,
    typer.Option("--store", envvar=STORE_ENV, show_envvar=True, metavar="FILE", help="SQLite store file."),
]
STORE_DEFAULT = Path(DEFAULT_PATH)
RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        envvar="COBENCH_RAY",
        show_envvar=True,
        metavar="ADDRESS",
        help="Spread the work over the Ray cluster at ADDRESS (HOST:PORT, auto, or local); needs the cluster extra.",
    ),
]
DevicesPathOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--devices-path",
        metavar="PATH",
        help="Extra device YAML file or folder (repeatable); also COBENCH_DEVICES_PATH (os.pathsep-separated).",
    ),
]
ModeOpt = Annotated[
    str | None,
    typer.Option(
        "--power-mode",
        metavar="MODE",
        help="Jetson power mode (nvpmodel name, e.g. MAXN_SUPER) [default: the catalogue's default mode].",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", "-d", metavar="NAME", help="Device name or NAME@MODE.")]
BatchOpt = Annotated[
    int | None, typer.Option("--batch", "-b", metavar="N", help="Sequences per forward pass [default: 1].")
]
PromptOpt = Annotated[
    int | None,
    typer.Option("--prompt", "-p", metavar="TOKENS", help="Prompt tokens, prefilled at once [default: 1024]."),
]
GenerateOpt = Annotated[
    int | None, typer.Option("--generate", "-g", metavar="TOKENS", help="Generated tokens [default: 16].")
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision",
        metavar="TYPE",
        help=f"Weights/compute: {', '.join(PRECISIONS)} (int8 = W8A8, int4 = W4A16) [default: fp16].",
    ),
]
KvOpt = Annotated[
    str | None,
    typer.Option(
        "--kv-precision",
        metavar="TYPE",
        help=f"KV-cache element type: {', '.join(KV_PRECISIONS)} [default: fp16; fp32 with fp32 weights].",
    ),
]
RawOpt = Annotated[
    bool,
    typer.Option(
        "--raw",
        help="Raw roofline: datasheet peaks at 100% efficiency, no overheads (the upper bound on speed).",
    ),
]
CalibrationOpt = Annotated[
    Path | None,
    typer.Option(
        "--calibration",
        metavar="FILE",
        help="Use this calibration JSON (from `cobench calibrate`) instead of the store's newest.",
    ),
]
UncalibratedOpt = Annotated[
    bool, typer.Option("--uncalibrated", help="Ignore stored calibrations: the device file's default parameters.")
]
ModelBackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        metavar="NAME",
        help="Predict with this backend's calibration (ort, torch, trt, ort-genai, llama.cpp) "
        "[default: the newest of any backend].",
    ),
]
ArchOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--arch", "-a", metavar="SPEC", help="Preset name, architecture YAML/JSON or HF config.json (repeatable)."
    ),
]
SpaceOpt = Annotated[Path, typer.Option("--space", "-s", metavar="FILE", help="Search-space YAML (see spaces/).")]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir", metavar="DIR", help="Export/engine cache [env COBENCH_CACHE; default: ./.cobench/cache]."
    ),
]


def workload_from_options(
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
    overrides = {"batch": batch, "prompt": prompt, "generate": generate, "precision": precision, "kv_precision": kv}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Workload(**values)


def model_chooser(
    store: Store | None,
    device: DeviceSpec,
    backend: str | None = None,
    calibration: Path | None = None,
    raw: bool = False,
    uncalibrated: bool = False,
) -> Callable[[str], LatencyModel]:
    """precision → the latency model the options ask for (see predict/latency_model.py resolve_model)."""
    return lambda precision: resolve_model(store, device, precision, backend, calibration, raw, uncalibrated)
