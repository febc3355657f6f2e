"""Shared pieces of the command line: the app, option types with units, error mapping, helpers."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.text import Text

from cobench import __version__
from cobench.devices import DeviceSpec
from cobench.errors import CobenchError, InputError
from cobench.operators import Counting
from cobench.precision import KV_PRECISIONS, PRECISIONS
from cobench.render import err, out
from cobench.roofline import RooflineParams
from cobench.spec import read_mapping
from cobench.store import Store, default_path
from cobench.workload import Workload

app = typer.Typer(
    help="Roofline latency modelling and on-device profiling for hardware co-design of small LLMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

if TYPE_CHECKING:
    from cobench.calibration import LatencyModel

F = TypeVar("F", bound=Callable[..., Any])
STATE = {"debug": os.environ.get("COBENCH_DEBUG") == "1"}

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
            err.print(Text.assemble(("error:", "red"), f" {e}"))
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
    overrides = {
        "batch": batch,
        "prompt": prompt,
        "generate": generate,
        "precision": precision,
        "kv_precision": kv,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Workload(**values)


CalibrationOpt = Annotated[
    Path | None,
    typer.Option("--calibration", help="Use this calibration JSON (from `cobench calibrate`) instead of the store's."),
]
UncalibratedOpt = Annotated[
    bool, typer.Option("--uncalibrated", help="Ignore stored calibrations: the device file's default parameters.")
]
ModelBackendOpt = Annotated[
    str | None,
    typer.Option("--backend", help="Predict for this backend's calibration (ort, torch, trt) [default: newest]."),
]


def latency_model(
    db: Store | None,
    device: DeviceSpec,
    precision: str,
    backend: str | None = None,
    calibration_file: Path | None = None,
    raw: bool = False,
    uncalibrated: bool = False,
) -> LatencyModel:
    """The parameters a prediction uses: --raw > --calibration FILE > the store's newest calibration for this
    device, power mode, precision (and backend) > the device file's defaults."""
    from cobench.calibration import BACKEND_COUNTING, Calibration, LatencyModel

    counting = BACKEND_COUNTING.get(backend or "", Counting())
    if raw:
        return LatencyModel(RooflineParams.ideal(), counting)
    if calibration_file is not None:
        c = Calibration.from_json(read_mapping(calibration_file, "calibration"), where=str(calibration_file))
        if c.device != device.name or c.precision != precision:
            raise InputError(
                "calibration", f"{calibration_file} is for {c.device} {c.precision}, not {device.name} {precision}"
            )
        return LatencyModel.of(c)
    found = None if uncalibrated or db is None else db.calibration(device.name, device.mode, precision, backend)
    if found:
        return LatencyModel.of(Calibration.from_json(found))
    return LatencyModel(RooflineParams.for_device(device), counting)


def open_store(path: Path | None) -> Store:
    return Store(path or default_path())
