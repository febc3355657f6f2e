"""Calibration: fit the latency model to what one device, backend and precision really measure.

Data: profiled models (their TTFT, and one decode step at each measured context) and kernel
microbenchmarks (each one operator of known class, FLOPs and bytes). Model: the roofline of
`cobench.roofline` itself, so a calibration is nothing but a `RooflineParams` — per operator class a
compute and a memory efficiency and a per-operator overhead, and a step overhead per phase. The
efficiencies act through the roofline's max(), so a GEMM is priced by its bytes when skinny (decode) and
by its FLOPs when large (prefill); the per-operator overhead is the half-saturation of a size-dependent
efficiency (FLOPs/(η·peak) + o = FLOPs/(η_eff(F)·peak) with η_eff = η·F/(F + o·η·peak)), which is how
small operators stay latency-bound. Standalone kernels pay one call overhead of their own, fitted as a
nuisance parameter that a model's step does not inherit.

Fit: robust (soft-L1) least squares on log(predicted / measured) — a 10 % miss weighs the same on a
50 µs kernel and a 300 ms prefill, and one outlier cannot drag the fit — with a weak prior pulling
parameters the data does not constrain back to the device defaults. Profiles count once per phase per
model; all kernels together count half as much as the profiles. Cross-validation leaves whole
architectures out; the spread of its log errors is the prediction interval (Student t, so few models
give an honestly wide interval).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy import optimize, stats

from cobench import __version__
from cobench.architecture import Architecture, as_arch_like
from cobench.devices import DeviceSpec
from cobench.errors import InputError
from cobench.kernels import KernelResult
from cobench.operators import OP_CLASSES, Counting, Op
from cobench.roofline import PHASES, RooflineParams, op_seconds, peak_flops, phase_ops, predict
from cobench.workload import Workload

SCHEMA = 1
LEVEL = 0.90  # prediction-interval coverage
KERNEL_CLASS = {"gemm": "matmul", "attention": "attention", "gather": "gather"}  # the rest: element-wise
KERNEL_SHARE = 0.5  # all kernels together weigh half as much as all profiles
ROBUST_SCALE = 0.05  # soft-L1 knee, in log units (≈ 5 % error): beyond it a residual counts linearly
MIN_MODELS = 2
FEW_MODELS = 5

# How each backend computes a forward pass, as cobench runs it: the exported graphs and the eager module
# return past ++ new (the KV cache is copied every step); ORT's CPU kernels materialise the full
# (unmasked-skipping) score matrix; torch's SDPA and TensorRT's fused attention do not.
BACKEND_COUNTING = {
    "ort": Counting(causal=False, fused_attention=False, kv_update="concat", kv_expand=True, moe_loop=True),
    "torch": Counting(kv_update="concat", kv_expand=True, moe_loop=True),
    "trt": Counting(causal=False, kv_update="concat", kv_expand=True, moe_loop=True),
}
N_CLASSES = len(OP_CLASSES)
STEPS = (*PHASES, "kernel")  # index of the step/call overhead an observation pays


@dataclass(frozen=True)
class Profiled:
    """One profiled model, as calibration needs it: what ran, at which workload, and its medians."""

    arch: Architecture
    workload: Workload
    ttft_s: float
    tpot_s: float
    decode_s: dict[int, float]  # median of one decode step at each measured context
    key: str = ""


@dataclass(frozen=True)
class Table:
    """Every operator of every observation, flattened, so one numpy pass prices them all."""

    obs: np.ndarray  # (M,) observation of each operator row
    op_class: np.ndarray  # (M,) index into OP_CLASSES
    weight: np.ndarray  # (M,) occurrences per call
    flops: np.ndarray  # (M,) per occurrence
    bytes: np.ndarray
    peak: np.ndarray  # (M,) FLOP/s ceiling of the row's class and precision
    launches: np.ndarray  # (M,) kernel launches per occurrence
    step: np.ndarray  # (N,) index into STEPS
    measured_s: np.ndarray  # (N,)
    fit_weight: np.ndarray  # (N,) weight of the observation's log residual
    bandwidth: float

    def predict(self, params: RooflineParams, kernel_call_s: float) -> np.ndarray:
        eta_c = np.array([params.compute_efficiency[c] for c in OP_CLASSES])[self.op_class]
        eta_m = np.array([params.memory_efficiency[c] for c in OP_CLASSES])[self.op_class]
        over = np.array([params.op_overhead_s[c] for c in OP_CLASSES])[self.op_class]
        half = np.array([params.intensity_half[c] for c in OP_CLASSES])[self.op_class]
        _, _, t = op_seconds(self.flops, self.bytes, self.peak, self.bandwidth, eta_c, eta_m, over, half, self.launches)
        steps = np.array([params.step_overhead_s["prefill"], params.step_overhead_s["decode"], kernel_call_s])
        return np.bincount(self.obs, self.weight * t, minlength=len(self.step)) + steps[self.step]


def _rows(ops: Sequence[Any], device: DeviceSpec, w: Workload) -> tuple[list[np.ndarray], ...]:
    """Flatten one call's operators; decode ops over S sampled contexts are averaged (weight count/S)."""
    cls, weight, flops, nbytes, peak, launches = [], [], [], [], [], []
    for op in ops:
        shape = np.broadcast(op.count, op.flops, op.bytes, op.launches).shape
        n = int(np.prod(shape)) if shape else 1
        cls.append(np.full(n, OP_CLASSES.index(op.op_class)))
        weight.append(np.broadcast_to(op.count, shape).ravel() / n)
        flops.append(np.broadcast_to(op.flops, shape).ravel().astype(float))
        nbytes.append(np.broadcast_to(op.bytes, shape).ravel().astype(float))
        peak.append(np.full(n, peak_flops(op.op_class, device, w)))
        launches.append(np.broadcast_to(op.launches, shape).ravel().astype(float))
    return cls, weight, flops, nbytes, peak, launches


def build_table(
    profiled: Sequence[Profiled], kernels: Sequence[KernelResult], device: DeviceSpec, counting: Counting
) -> Table:
    """Observations: each model's prefill and each measured decode step, then each kernel."""
    columns: list[list[np.ndarray]] = [[], [], [], [], [], [], []]  # obs, class, weight, flops, bytes, peak, launches
    step, measured, group_weight = [], [], []

    def add(ops: Sequence[Any], w: Workload, which: str, seconds: float, fit_weight: float) -> None:
        parts = _rows(ops, device, w)
        columns[0].append(np.full(sum(len(c) for c in parts[0]), len(step)))
        for column, part in zip(columns[1:], parts, strict=True):
            column.extend(part)
        step.append(STEPS.index(which))
        measured.append(seconds)
        group_weight.append(fit_weight)

    for p in profiled:
        batch = as_arch_like(p.arch)
        prefill = Workload(p.workload.batch, p.workload.prompt, 1, p.workload.precision, p.workload.kv_precision)
        add(phase_ops(batch, prefill, "prefill", counting), prefill, "prefill", p.ttft_s, 1.0)
        for context, seconds in p.decode_s.items():
            w = replace(prefill, prompt=int(context))
            add(phase_ops(batch, w, "decode", counting), w, "decode", seconds, 1.0 / len(p.decode_s))
    n_profile_obs = 2 * len(profiled)
    for k in kernels:
        w = Workload(precision=k.spec.precision)
        op_class = KERNEL_CLASS.get(k.spec.kind, "elementwise")
        op = Op(k.spec.label, op_class, 1, k.flops, 0, k.bytes)
        add([op], w, "kernel", k.median_s, KERNEL_SHARE * max(n_profile_obs, 2) / len(kernels))
    if not step:
        raise InputError("calibrate", "nothing to fit: no profiled models and no kernel results")
    cat = [np.concatenate(c) if c else np.zeros(0) for c in columns]
    return Table(
        obs=cat[0].astype(np.int64),
        op_class=cat[1].astype(np.int64),
        weight=cat[2],
        flops=cat[3],
        bytes=cat[4],
        peak=cat[5],
        launches=cat[6],
        step=np.array(step),
        measured_s=np.array(measured),
        fit_weight=np.array(group_weight),
        bandwidth=device.bandwidth_bytes_s,
    )


def profiled_from_rows(rows: Sequence[dict[str, Any]]) -> list[Profiled]:
    """Store profile rows (status ok) as calibration data."""
    found = []
    for r in rows:
        w = dict(r["workload"])
        w.pop("contexts", None)
        s = r["summary"]
        found.append(
            Profiled(
                Architecture.from_dict(r["arch"]),
                Workload(**w),
                float(s["ttft_s"]),
                float(s["tpot_s"]),
                {int(c): float(v) for c, v in s["decode_s"].items()},
                r["key"],
            )
        )
    return found


# --- parameters <-> vector (log space) ------------------------------------------------------------------

DEFAULT_STEP_S = 10e-6  # prior centre of step and kernel-call overheads (cobench's default is none)
DEFAULT_INTENSITY_HALF = 1.0  # prior centre: FLOP/B, i.e. no intensity dependence at GEMM intensities
# The vector's blocks, in order: (name, length, lower bound, upper bound, prior σ), all in log space.
BLOCKS = (
    ("compute_efficiency", N_CLASSES, np.log(1e-4), np.log(50.0), np.log(10.0)),
    ("memory_efficiency", N_CLASSES, np.log(1e-4), np.log(50.0), np.log(10.0)),
    ("op_overhead_s", N_CLASSES, np.log(1e-9), np.log(10.0), np.log(100.0)),
    ("intensity_half", N_CLASSES, np.log(1e-3), np.log(1e4), np.log(1000.0)),
    ("step_overhead_s", len(PHASES), np.log(1e-9), np.log(10.0), np.log(100.0)),
    ("kernel_call_s", 1, np.log(1e-9), np.log(10.0), np.log(100.0)),
)


def _block(column: int) -> np.ndarray:
    """One column of BLOCKS (2 lower, 3 upper, 4 σ) laid out like the parameter vector."""
    return np.concatenate([np.full(b[1], b[column]) for b in BLOCKS])


def to_vector(params: RooflineParams, kernel_call_s: float) -> np.ndarray:
    floor = 1e-9  # log of a zero overhead
    return np.log(
        np.concatenate(
            [
                [params.compute_efficiency[c] for c in OP_CLASSES],
                [params.memory_efficiency[c] for c in OP_CLASSES],
                [max(params.op_overhead_s[c], floor) for c in OP_CLASSES],
                [max(params.intensity_half[c], 1e-3) for c in OP_CLASSES],
                [max(params.step_overhead_s[p], floor) for p in PHASES],
                [max(kernel_call_s, floor)],
            ]
        )
    )


def from_vector(x: np.ndarray, source: str) -> tuple[RooflineParams, float]:
    v = np.exp(x)
    n = N_CLASSES
    params = RooflineParams(
        compute_efficiency=dict(zip(OP_CLASSES, v[:n].tolist(), strict=True)),
        memory_efficiency=dict(zip(OP_CLASSES, v[n : 2 * n].tolist(), strict=True)),
        op_overhead_s=dict(zip(OP_CLASSES, v[2 * n : 3 * n].tolist(), strict=True)),
        intensity_half=dict(zip(OP_CLASSES, v[3 * n : 4 * n].tolist(), strict=True)),
        step_overhead_s=dict(zip(PHASES, v[4 * n : 4 * n + 2].tolist(), strict=True)),
        source=source,
    )
    return params, float(v[-1])


def _prior(device: DeviceSpec) -> tuple[np.ndarray, np.ndarray]:
    base = replace(
        RooflineParams.for_device(device),
        step_overhead_s=dict.fromkeys(PHASES, DEFAULT_STEP_S),
        intensity_half=dict.fromkeys(OP_CLASSES, DEFAULT_INTENSITY_HALF),
    )
    return to_vector(base, DEFAULT_STEP_S), _block(4)


@dataclass(frozen=True)
class Fit:
    params: RooflineParams
    kernel_call_s: float
    cost: float
    n_obs: int


def fit(table: Table, device: DeviceSpec, source: str) -> Fit:
    """Robust least squares on weighted log residuals plus the prior's; bounded, from the prior's centre."""
    centre, sigma = _prior(device)
    sqrt_w = np.sqrt(table.fit_weight)
    log_measured = np.log(table.measured_s)

    def residuals(x: np.ndarray) -> np.ndarray:
        params, call = from_vector(x, source)
        data = sqrt_w * (np.log(table.predict(params, call)) - log_measured)
        return np.concatenate([data, (x - centre) / sigma * ROBUST_SCALE])

    lower, upper = _block(2), _block(3)
    slower = np.where(np.arange(len(centre)) < 2 * N_CLASSES, np.log(0.3), 0.0)  # second start: η × 0.3
    best = None
    for start in (centre, centre + slower):
        r = optimize.least_squares(
            residuals,
            np.clip(start, lower + 1e-9, upper - 1e-9),
            bounds=(lower, upper),
            loss="soft_l1",
            f_scale=ROBUST_SCALE,
            x_scale=1.0,
            max_nfev=400,
        )
        if best is None or r.cost < best.cost:
            best = r
    assert best is not None
    params, call = from_vector(best.x, source)
    return Fit(params, call, float(best.cost), len(table.step))


# --- errors, cross-validation, learning curve ------------------------------------------------------------


def predicted_pair(p: Profiled, device: DeviceSpec, params: RooflineParams, counting: Counting) -> tuple[float, float]:
    """(TTFT, TPOT) by the product's own path (`roofline.predict`), as `predict` and `sweep` compute them."""
    r = predict(p.arch, device, p.workload, params, counting)
    return float(r.ttft_s[0]), float(r.tpot_s[0])


def log_errors(
    models: Sequence[Profiled], device: DeviceSpec, params: RooflineParams, counting: Counting
) -> dict[str, np.ndarray]:
    """log(predicted / measured) per phase metric ("ttft", "tpot"), one per model."""
    pred = np.array([predicted_pair(p, device, params, counting) for p in models]).reshape(-1, 2)
    meas = np.array([(p.ttft_s, p.tpot_s) for p in models]).reshape(-1, 2)
    logs = np.log(pred / meas)
    return {"ttft": logs[:, 0], "tpot": logs[:, 1]}


def error_metrics(log_err: np.ndarray) -> dict[str, float | int | None]:
    """MAPE, median and max |error|, share within ±5 % and ±10 %, mean signed error (all in %)."""
    if len(log_err) == 0:
        return {"n": 0, "mape": None, "median_ape": None, "max_ape": None, "within_5": None, "within_10": None}
    pct = (np.exp(log_err) - 1) * 100
    ape = np.abs(pct)
    return {
        "n": len(pct),
        "mape": float(ape.mean()),
        "median_ape": float(np.median(ape)),
        "max_ape": float(ape.max()),
        "within_5": float(np.mean(ape <= 5)),
        "within_10": float(np.mean(ape <= 10)),
        "bias": float(pct.mean()),
    }


def fit_models(
    models: Sequence[Profiled], kernels: Sequence[KernelResult], device: DeviceSpec, counting: Counting, source: str
) -> Fit:
    return fit(build_table(models, kernels, device, counting), device, source)


def cross_validate(
    models: Sequence[Profiled],
    kernels: Sequence[KernelResult],
    device: DeviceSpec,
    counting: Counting,
    folds: int = 5,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Out-of-fold log errors: each model predicted by a fit that never saw its architecture."""
    names = sorted({p.arch.name for p in models})
    order = np.random.default_rng(seed).permutation(len(names))
    k = min(folds, len(names))
    fold_of = {names[j]: i % k for i, j in enumerate(order)}
    out = {"ttft": np.full(len(models), np.nan), "tpot": np.full(len(models), np.nan)}
    for f in range(k):
        test = [i for i, p in enumerate(models) if fold_of[p.arch.name] == f]
        train = [p for p in models if fold_of[p.arch.name] != f]
        params = fit_models(train, kernels, device, counting, "cv").params
        errs = log_errors([models[i] for i in test], device, params, counting)
        for metric in out:
            out[metric][test] = errs[metric]
    return out


def interval(log_err: np.ndarray, level: float = LEVEL) -> dict[str, float] | None:
    """Multiplicative prediction interval from out-of-fold log errors: centred on their mean (the fit's
    residual bias), half-width t · s · √(1 + 1/n); None with fewer than two errors."""
    n = len(log_err)
    if n < 2:
        return None
    mean, s = float(np.mean(log_err)), float(np.std(log_err, ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * s * np.sqrt(1 + 1 / n)
    # predicted/measured = exp(e) ⇒ measured = predicted · exp(−e)
    return {"level": level, "low": float(np.exp(-mean - half)), "high": float(np.exp(-mean + half)), "n": n}


def learning_curve(
    models: Sequence[Profiled],
    kernels: Sequence[KernelResult],
    device: DeviceSpec,
    counting: Counting,
    evaluate_on: Sequence[Profiled] | None = None,
    repeats: int = 5,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Error vs number of profiled models: fits on random subsets of each size, scored on `evaluate_on`
    (default: the models left out of the subset). Size 0 is kernels alone."""
    rng = np.random.default_rng(seed)
    names = sorted({p.arch.name for p in models})
    sizes = range(0 if kernels else 1, len(names) + (1 if evaluate_on else 0))
    rows = []
    for size in sizes:
        scores: dict[str, list[float]] = {"ttft": [], "tpot": []}
        for _ in range(1 if size in (0, len(names)) else repeats):
            chosen = set(rng.choice(names, size, replace=False)) if size else set()
            train = [p for p in models if p.arch.name in chosen]
            test = list(evaluate_on) if evaluate_on else [p for p in models if p.arch.name not in chosen]
            if not test:
                continue
            params = fit_models(train, kernels, device, counting, "learning curve").params
            errs = log_errors(test, device, params, counting)
            for metric in scores:
                scores[metric].append(error_metrics(errs[metric])["mape"] or 0.0)
        if scores["ttft"]:
            rows.append(
                {
                    "models": size,
                    "ttft_mape": float(np.median(scores["ttft"])),
                    "tpot_mape": float(np.median(scores["tpot"])),
                    "repeats": len(scores["ttft"]),
                }
            )
    return rows


# --- the calibration record ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """A fitted latency model for one device (and power mode), backend and precision, with its evidence."""

    device: str
    power_mode: str | None
    backend: str
    precision: str
    params: RooflineParams
    counting: Counting
    intervals: dict[str, dict[str, float] | None]  # "ttft" / "tpot" → {level, low, high, n}
    report: dict[str, Any] = field(default_factory=dict)
    version: int | None = None

    @property
    def label(self) -> str:
        mode = f"@{self.power_mode}" if self.power_mode else ""
        v = f" v{self.version}" if self.version else ""
        return f"{self.device}{mode} {self.backend} {self.precision}{v}"

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "device": self.device,
            "power_mode": self.power_mode,
            "backend": self.backend,
            "precision": self.precision,
            "version": self.version,
            "params": asdict(self.params),
            "counting": asdict(self.counting),
            "intervals": self.intervals,
            "report": self.report,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "calibration") -> Calibration:
        if data.get("schema") != SCHEMA:
            raise InputError(f"{where}.schema", f"expected calibration schema {SCHEMA}, got {data.get('schema')!r}")
        try:
            p = data["params"]
            params = RooflineParams(
                dict(p["compute_efficiency"]),
                dict(p["memory_efficiency"]),
                dict(p["op_overhead_s"]),
                dict(p["step_overhead_s"]),
                p["source"],
                dict(p.get("intensity_half") or dict.fromkeys(OP_CLASSES, 0.0)),  # absent before v0.4
            )
            return cls(
                data["device"],
                data.get("power_mode"),
                data["backend"],
                data["precision"],
                params,
                Counting(**data["counting"]),
                data["intervals"],
                data.get("report", {}),
                data.get("version"),
            )
        except (KeyError, TypeError) as e:
            raise InputError(where, f"not a cobench calibration ({e})") from None

    def bounds(self, metric: str, predicted_s: Any) -> tuple[Any, Any] | None:
        """The prediction interval around a predicted TTFT ("ttft") or TPOT ("tpot"), or None if unknown."""
        iv = self.intervals.get(metric)
        if not iv:
            return None
        return np.asarray(predicted_s) * iv["low"], np.asarray(predicted_s) * iv["high"]


ERROR_KINDS = (("raw", "raw roofline"), ("fitted", "calibrated, in-sample"), ("cross_validated", "calibrated, CV"))


def error_rows(report: dict[str, Any]) -> list[list[str]]:
    """The error table of a calibration report: per metric and model, MAPE, median and max |error| (%) and the
    shares within ±5 % and ±10 % — what `calibrate` prints and the report shows."""
    rows = []
    for metric in ("ttft", "tpot"):
        for kind, label in ERROR_KINDS:
            e = report["errors"][metric][kind]
            shares = [f"{e['within_5']:.0%}", f"{e['within_10']:.0%}"]
            rows.append([metric.upper(), label, *(f"{e[k]:.1f}%" for k in ("mape", "median_ape", "max_ape")), *shares])
    return rows


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
) -> Calibration:
    """Fit on everything, cross-validate by architecture, and record raw / fitted / out-of-fold errors."""
    names = require_models(models, f"{device.name} {backend} {precision}")
    counting = BACKEND_COUNTING.get(backend, Counting(kv_update="concat"))
    t0 = time.perf_counter()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    source = f"calibrated on {device.name} {backend} {precision} ({len(names)} models, {len(kernels)} kernels, {stamp})"
    full = fit_models(models, kernels, device, counting, source)
    cv = cross_validate(models, kernels, device, counting, folds, seed)
    raw = log_errors(models, device, RooflineParams.ideal(), counting)
    fitted = log_errors(models, device, full.params, counting)
    both = (("raw", raw), ("cv", cv))
    report = {
        "cobench": __version__,
        "created": stamp,
        "models": [{"arch": p.arch.name, "key": p.key, "workload": p.workload.to_dict()} for p in models],
        "kernels": len(kernels),
        "kernel_call_s": full.kernel_call_s,
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
        "learning_curve": learning_curve(models, kernels, device, counting, seed=seed) if curve else [],
        "few_models": len(names) < FEW_MODELS,
    }
    report["seconds"] = time.perf_counter() - t0
    intervals = {m: interval(cv[m]) for m in ("ttft", "tpot")}
    return Calibration(device.name, device.mode, backend, precision, full.params, counting, intervals, report)


@dataclass(frozen=True)
class LatencyModel:
    """What a prediction uses: parameters and counting conventions, and the calibration they came from."""

    params: RooflineParams
    counting: Counting
    calibration: Calibration | None = None

    @classmethod
    def of(cls, calibration: Calibration) -> LatencyModel:
        return cls(calibration.params, calibration.counting, calibration)

    def bounds(self, metric: str, predicted_s: Any) -> tuple[Any, Any] | None:
        return self.calibration.bounds(metric, predicted_s) if self.calibration else None

    def interval_fields(self, ttft_s: float, tpot_s: float) -> dict[str, list[float] | None]:
        """`ttft_interval_s` and `tpot_interval_s` of one prediction, as a record stores them (None: unknown)."""
        found = {m: self.bounds(m, v) for m, v in (("ttft", ttft_s), ("tpot", tpot_s))}
        return {f"{m}_interval_s": [float(x) for x in b] if b else None for m, b in found.items()}

    @property
    def describe(self) -> str:
        if not self.calibration:
            return f"uncalibrated roofline ({self.params.source}): error unknown until calibrated on this device"
        c = self.calibration
        iv = [f"{m.upper()} ×{v['low']:.3g}–{v['high']:.3g}" for m, v in c.intervals.items() if v]
        level = next((f"{v['level']:.0%}" for v in c.intervals.values() if v), "")
        return f"calibration {c.label}" + (f"; {level} prediction interval {', '.join(iv)}" if iv else "")
