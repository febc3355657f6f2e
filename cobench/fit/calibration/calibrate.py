"""`cobench calibrate`: fit on everything, cross-validate by architecture, record raw / fitted /
out-of-fold errors. Profiles count once per phase per model; all kernels together count half as much as
the profiles (see design.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cobench import __version__
from cobench.errors import InputError
from cobench.files import write_atomic
from cobench.fit.calibration.design import Profiled
from cobench.fit.calibration.record import Calibration
from cobench.fit.calibration.solve import TIER_PAST, CacheTier, fit_models, tier_placed
from cobench.fit.calibration.validation import cross_validate, error_metrics, interval, learning_curve, log_errors
from cobench.hardware.devices import DeviceSpec
from cobench.measure.kernels.results import KernelResult
from cobench.measure.kernels.run import KERNEL_BACKENDS
from cobench.measure.result import ProfileResult
from cobench.measure.runners.ort_session import ORT_DEFAULT_THREADS
from cobench.predict.latency_model import backend_counting
from cobench.predict.roofline import RooflineParams
from cobench.store import Store

AT_FLOOR = 1.5  # cross-validated MAPE within 1.5× the measurements' own repeatability: nothing left to fit
MIN_MODELS = 2
FEW_MODELS = 5


def repeatability_floor(models: Sequence[Profiled]) -> dict[str, float | None]:
    """Per metric, the median between-round CV of the profiles, in %: how well the machine repeats a
    measurement, below which no model error can be resolved (None for profiles measured in one round)."""
    found = {}
    for metric in ("ttft", "tpot"):
        values = [p.repeatability[metric] for p in models if metric in p.repeatability]
        found[metric] = float(np.median(values)) * 100 if values else None
    return found


def _mape(log_err: np.ndarray) -> float:
    return float(np.mean(np.abs(np.exp(log_err) - 1)) * 100)


def require_models(models: Sequence[Profiled], what: str) -> list[str]:
    """The distinct architectures, or an error when there are too few to fit and cross-validate."""
    names = sorted({p.arch.name for p in models})
    if len(names) < MIN_MODELS:
        raise InputError(
            "profiles",
            f"calibration needs at least {MIN_MODELS} profiled architectures of {what}, found {len(names)}:"
            " run `cobench profile` first",
        )
    return names


def calibrate(
    models: Sequence[Profiled],
    kernels: Sequence[KernelResult],
    device: DeviceSpec,
    backend: str,
    precision: str,
    folds: int = 5,
    curve: bool = True,
    seed: int = 0,
    tier: CacheTier | None = None,
) -> Calibration:
    """Fit on everything, cross-validate by architecture, and record raw / fitted / out-of-fold errors
    (every fit with the cache tier held at `tier`, if given)."""
    names = require_models(models, f"{device.name} {backend} {precision}")
    floor = repeatability_floor(models)
    counting = backend_counting(backend, device)
    t0 = time.perf_counter()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    source = f"calibrated on {device.name} {backend} {precision} ({len(names)} models, {len(kernels)} kernels, {stamp})"
    full = fit_models(models, kernels, device, counting, source, tier)
    cv = cross_validate(models, kernels, device, counting, folds, seed, tier)
    raw = log_errors(models, device, RooflineParams.ideal(), counting)
    fitted = log_errors(models, device, full.params, counting)
    both = (("raw", raw), ("cv", cv))
    report = {
        "cobench": __version__,
        "created": stamp,
        "models": [{"arch": p.arch.name, "key": p.key, "workload": p.workload.to_dict()} for p in models],
        "kernels": len(kernels),
        "kernel_call_s": full.kernel_call_s,
        "classes_fitted": list(full.classes),
        "folds": min(folds, len(names)),
        "errors": {
            metric: {
                "raw": error_metrics(raw[metric]),
                "fitted": error_metrics(fitted[metric]),
                "cross_validated": error_metrics(cv[metric]),
            }
            for metric in ("ttft", "tpot")
        },
        "per_model": [
            {
                "arch": p.arch.name,
                "prompt": p.workload.prompt,
                "measured_ttft_s": p.ttft_s,
                "measured_tpot_s": p.tpot_s,
                **{f"{kind}_{m}_error": float(np.exp(e[m][i]) - 1) for kind, e in both for m in e},
            }
            for i, p in enumerate(models)
        ],
        "learning_curve": learning_curve(models, kernels, device, counting, seed=seed, tier=tier) if curve else [],
        "cache_tier": {"placed": full.tier_placed, "reach_bytes": full.reach_bytes} | (tier.to_json() if tier else {}),
        "few_models": len(names) < FEW_MODELS,
        "repeatability_floor": floor,
        "at_floor": {m: floor[m] is not None and cv[m].size > 0 and _mape(cv[m]) <= AT_FLOOR * floor[m] for m in floor},
    }
    report["seconds"] = time.perf_counter() - t0
    intervals = {m: interval(cv[m]) for m in ("ttft", "tpot")}
    return Calibration(device.name, device.mode, backend, precision, full.params, counting, intervals, report)


def borrowed_tier(source: Calibration, device: DeviceSpec) -> tuple[CacheTier, str | None]:
    """The cache tier of `source`, a calibration of this device, to hold fixed; and a note when `source`
    fitted that tier from inside only too (its largest pass short of TIER_PAST × C)."""
    mode = f"@{device.mode}" if device.mode else ""
    if (source.device, source.power_mode) != (device.name, device.mode):
        raise InputError("tier-from", f"{source.label} was calibrated on another device than {device.name}{mode}")
    held = source.report.get("cache_tier")
    held = held if isinstance(held, dict) else {}
    reach = held.get("reach_bytes")
    reach = float(reach) if isinstance(reach, (int, float)) else 0.0
    note = None
    if not tier_placed(source.params, reach, "from" in held):
        note = (
            f"{source.label} fitted that tier from inside only too: its largest training pass read"
            f" {reach / 1e6:.1f} MB again, {reach / source.params.cache_bytes:.2f} C (placed from {TIER_PAST:g} C)"
        )
    return CacheTier.of(source.params, source.label), note


@dataclass(frozen=True)
class CalibrationRun:
    """What `cobench calibrate` made: the versioned calibration, its JSON file and figure, and what it
    was fitted on (with what a user should know about that data)."""

    calibration: Calibration
    file: Path
    figures: list[Path]
    n_models: int
    n_kernels: int
    noisy: list[str]  # profiled architectures with a phase over the noise threshold
    notes: list[str]

    def to_json(self) -> dict[str, object]:
        return self.calibration.to_json() | {"file": str(self.file), "figures": [str(f) for f in self.figures]}


def _chosen(
    rows: list[ProfileResult], arch: list[str] | None, exclude: list[str] | None, what: str
) -> list[ProfileResult]:
    names = {r.arch_name for r in rows}
    for field, wanted in (("arch", arch), ("exclude", exclude)):
        unknown = sorted(set(wanted or []) - names)
        if unknown:
            raise InputError(field, f"{unknown[0]!r} has no {what} in the store")
    return [r for r in rows if (not arch or r.arch_name in arch) and r.arch_name not in (exclude or [])]


# Kernels that run inside an engine though another backend times them alone: ORT GenAI loads the onnxruntime
# package and runs its GroupQueryAttention, the op ORT's attention suite times — on the same library and threads,
# the engine's own attention kernel. Its other ops are its builder's graph, fused otherwise than ORT's suites.
INSIDE = {"ort-genai": ("ort", ("attention",))}


def engine_kernels(
    stored: Sequence[KernelResult], backend: str, rows: Sequence[ProfileResult]
) -> tuple[list[KernelResult], list[str]]:
    """The stored kernels that run inside an engine (INSIDE), on the onnxruntime and thread count its profiles
    ran; and what the calibration should say about the rest."""
    inside, kinds = INSIDE.get(backend, ("", ()))
    ran = {_runtime(_runner(r)) for r in rows}
    usable = [k for k in stored if k.backend == inside and k.spec.kind in kinds and _runtime(k.environment) in ran]
    notes, what = [], "/".join(kinds)
    if len(stored) > len(usable):
        also = f" and the {inside} {what} kernels" if inside else ""
        notes.append(
            f"{backend} is fitted on its profiles{also} only: kernels of another runtime would pin efficiencies it"
            " does not reach (docs/calibration.md)"
        )
    if inside and not usable:
        threads = ", ".join(sorted({str(t) for _, t in ran}))
        notes.append(
            f"no {inside} {what} kernels at the profiles' onnxruntime and {threads} threads, which run inside"
            f" {backend}: `cobench kernels run {' '.join(kinds)} --backend {inside} --threads {threads}`"
        )
    return usable, notes


def same_threads(kernels: Sequence[KernelResult], rows: Sequence[ProfileResult]) -> list[KernelResult]:
    """The kernels run on the thread count the profiles ran (ORT's default where neither set one)."""
    ran = {_threads(_runner(r)) for r in rows}
    return [k for k in kernels if _threads(k.environment) in ran]


def _runner(r: ProfileResult) -> dict[str, Any]:
    return (r.environment or {}).get("runner") or {}


def _threads(record: dict[str, Any]) -> Any:
    return record.get("intra_op_threads", ORT_DEFAULT_THREADS)


def _runtime(record: dict[str, Any]) -> tuple[Any, Any]:
    return record.get("onnxruntime"), _threads(record)


def chosen_kernels(
    found: Sequence[KernelResult],
    device: DeviceSpec,
    backend: str,
    precision: str,
    rows: Sequence[ProfileResult],
    use_kernels: bool = True,
) -> tuple[list[KernelResult], list[str]]:
    """The stored kernels a calibration of `backend` fits beside its profiles `rows`, and what to say about the
    rest: those run on this device's processor and on the profiles' thread count — the backend's own (any
    backend's if it has none), or for an engine those that run inside it (engine_kernels)."""
    stored = [k for k in found if k.runner_device == device.runner]  # never another processor's ceilings
    same_backend = [k for k in stored if k.backend == backend]
    engine = backend not in KERNEL_BACKENDS  # ORT GenAI, llama.cpp: their kernels run inside the engine only
    kernels, engine_notes = engine_kernels(stored, backend, rows) if engine else (same_backend or stored, [])
    notes = []
    if len(stored) < len(found):
        notes.append(f"left out {len(found) - len(stored)} kernels not run on {device.name}'s {device.runner}")
    matched = kernels if engine else same_threads(kernels, rows)  # an engine's are matched on its runtime
    if len(matched) < len(kernels):
        notes.append(f"left out {len(kernels) - len(matched)} kernels run on another thread count than the profiles")
    kernels = matched
    if engine:
        notes += engine_notes if use_kernels else []
    elif use_kernels and not kernels:
        notes.append(f"no {precision} kernel results for {device.name}: fitting profiles only (`cobench kernels run`)")
    elif kernels and not same_backend:
        notes.append(f"no {backend} kernels stored; using {len(kernels)} from {kernels[0].backend}")
    return kernels, notes


def calibrate_from_store(
    store: Store,
    device: DeviceSpec,
    backend: str,
    precision: str,
    out_dir: Path,
    arch: list[str] | None = None,
    exclude: list[str] | None = None,
    use_kernels: bool = True,
    folds: int = 5,
    curve: bool = True,
    seed: int = 0,
    plot: Callable[[Calibration, Path], list[Path]] | None = None,
    tier_from: Calibration | None = None,
) -> CalibrationRun:
    """Fit this device's stored profiles of one backend and precision (and its kernels of that precision,
    the backend's own when there are any), store the result as the next version and write it to out_dir.
    `tier_from`: a calibration of this device whose cache tier to hold fixed."""
    if folds < 2:
        raise InputError("folds", f"cross-validation needs at least 2 folds, got {folds}")
    tier, borrowed_note = borrowed_tier(tier_from, device) if tier_from else (None, None)
    what = f"{backend} {precision} profile on {device.name}"
    found = store.profiles.find(device.name, device.mode, backend, precision, status="ok", any_mode=False)
    rows = _chosen(found, arch, exclude, what)
    models = [Profiled.of(r) for r in rows]
    require_models(models, f"{device.name} {backend} {precision}")
    found_kernels = store.kernels.find(device.name, precision) if use_kernels else []
    kernels, notes = chosen_kernels(found_kernels, device, backend, precision, rows, use_kernels)
    c = store.calibrations.put(calibrate(models, kernels, device, backend, precision, folds, curve, seed, tier))
    if tier:
        notes.append(
            f"the cache tier is held at {tier.source}'s (C = {tier.cache_bytes / 2**20:.0f} MiB,"
            f" ×{tier.cache_speedup:.2f}); everything else is fitted on these profiles"
        )
        notes += [borrowed_note] if borrowed_note else []
    elif not c.report["cache_tier"]["placed"]:
        reach, p = c.report["cache_tier"]["reach_bytes"] / 1e6, c.params
        notes.append(
            f"the cache tier is fitted from inside only (C = {p.cache_bytes / 2**20:.0f} MiB, ×{p.cache_speedup:.2f};"
            f" no training pass reads more than {reach:.1f} MB again): predictions of bigger models extrapolate it —"
            " add a training architecture past the last cache level at this precision, or hold the tier at a"
            " calibration of this device that placed it (`--tier-from`, docs/calibration.md)"
        )
    mode = f"@{device.mode}" if device.mode else ""
    stem = out_dir / f"{device.name}{mode}-{backend}-{precision}-v{c.version}"
    # appended, not with_suffix: "cpu-llama.cpp-fp32-v1" would lose ".cpp-fp32-v1" as if it were the extension
    file = write_atomic(stem.with_name(stem.name + ".json"), json.dumps(c.to_json(), indent=1))
    figures = plot(c, stem.with_name(stem.name + "-parity")) if plot else []
    noisy = [r.arch_name for r in rows if r.measured and r.measured.noisy]
    return CalibrationRun(c, file, figures, len(models), len(kernels), noisy, notes)
