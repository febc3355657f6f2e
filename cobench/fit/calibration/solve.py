"""Calibration, step 2 — the fit: robust (soft-L1) least squares on log(predicted / measured) over the
design matrix — a 10 % miss weighs the same on a 50 µs kernel and a 300 ms prefill, and one outlier
cannot drag the fit — with a weak prior pulling parameters the data does not constrain back to the
device defaults. Parameters live in log space as one vector (see BLOCKS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import optimize

from cobench.fit.calibration.design import DesignMatrix, Profiled, build_design
from cobench.hardware.devices import DeviceSpec
from cobench.measure.kernels.results import KernelResult
from cobench.predict.operators import OP_CLASSES, Counting
from cobench.predict.roofline import PHASES, RooflineParams

ROBUST_SCALE = 0.05  # soft-L1 knee, in log units (≈ 5 % error): beyond it a residual counts linearly
N_CLASSES = len(OP_CLASSES)

DEFAULT_STEP_S = 10e-6  # prior centre of step and kernel-call overheads (cobench's default is none)
DEFAULT_INTENSITY_HALF = 1.0  # prior centre: FLOP/B, i.e. no intensity dependence at GEMM intensities
DEFAULT_CACHE_BYTES = 32 * 2**20  # prior centre of the cache tier's size (a CPU's LLC share, a GPU's L2)
TIER_PAST = 2.0  # a working set of 2 C reads 94 % of itself from memory (CACHE_SHARPNESS 4): past the tier
START_CACHE_SPEEDUP = 2.0  # where the fit starts the tier's speedup (at its prior, 1, the size has no gradient)
NO_REFILL = 1e-3  # the refill's prior centre and floor: none, unless the steps after a prompt show one
START_REFILL = 1.0  # where the fit starts it (at its floor its gradient vanishes)
# The vector's blocks, in order: (name, length, lower bound, upper bound, prior σ), all in log space.
BLOCKS = (
    ("compute_efficiency", N_CLASSES, np.log(1e-4), np.log(50.0), np.log(10.0)),
    ("memory_efficiency", N_CLASSES, np.log(1e-4), np.log(50.0), np.log(10.0)),
    ("op_overhead_s", N_CLASSES, np.log(1e-9), np.log(10.0), np.log(100.0)),
    ("intensity_half", N_CLASSES, np.log(1e-3), np.log(1e4), np.log(1000.0)),
    ("step_overhead_s", len(PHASES), np.log(1e-9), np.log(10.0), np.log(100.0)),
    ("cache_bytes", 1, np.log(1e5), np.log(1e13), np.log(100.0)),
    ("cache_speedup", 1, 0.0, np.log(20.0), np.log(10.0)),
    ("refill_reads", 1, np.log(NO_REFILL), np.log(20.0), np.log(10.0)),
    ("kernel_call_s", 1, np.log(1e-9), np.log(10.0), np.log(100.0)),
)
CACHE_SPEEDUP = sum(b[1] for b in BLOCKS[:-2]) - 1  # index of the speedup in the vector
REFILL = CACHE_SPEEDUP + 1


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
                [max(params.cache_bytes, 1e5), max(params.cache_speedup, 1.0)],
                [max(params.refill_reads, NO_REFILL)],
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
        cache_bytes=float(v[4 * n + 2]),
        cache_speedup=float(v[4 * n + 3]),
        refill_reads=float(v[REFILL]),
    )
    return params, float(v[-1])


def _prior(device: DeviceSpec) -> tuple[np.ndarray, np.ndarray]:
    base = replace(
        RooflineParams.for_device(device),
        step_overhead_s=dict.fromkeys(PHASES, DEFAULT_STEP_S),
        intensity_half=dict.fromkeys(OP_CLASSES, DEFAULT_INTENSITY_HALF),
        cache_bytes=DEFAULT_CACHE_BYTES,
    )
    return to_vector(base, DEFAULT_STEP_S), _block(4)


@dataclass(frozen=True)
class CacheTier:
    """A cache tier held fixed in a fit, taken from another calibration of the machine: the tier is the
    machine's, not the precision's, and a 4-bit training set seldom reads past the last cache level."""

    cache_bytes: float
    cache_speedup: float
    source: str  # the calibration it comes from

    @classmethod
    def of(cls, params: RooflineParams, source: str) -> CacheTier:
        return cls(params.cache_bytes, params.cache_speedup, source)

    def to_json(self) -> dict[str, float | str]:
        return {"cache_bytes": self.cache_bytes, "cache_speedup": self.cache_speedup, "from": self.source}

    @classmethod
    def held_in(cls, report: dict[str, Any]) -> CacheTier | None:
        """The tier a calibration's report says it held fixed, if it held one."""
        t = report.get("cache_tier") or {}
        return cls(float(t["cache_bytes"]), float(t["cache_speedup"]), str(t["from"])) if "from" in t else None


@dataclass(frozen=True)
class Fit:
    params: RooflineParams
    kernel_call_s: float
    cost: float
    n_obs: int
    reach_bytes: float  # the largest working set an observation read (inf: a cold kernel)
    tier: CacheTier | None = None  # the tier held fixed, when it came from another calibration
    classes: tuple[str, ...] = ()  # the operator classes the data ran (DesignMatrix.classes_present)

    @property
    def tier_placed(self) -> bool:
        return tier_placed(self.params, self.reach_bytes, self.tier is not None)


def tier_placed(params: RooflineParams, reach_bytes: float, held: bool) -> bool:
    """Whether a fit's cache tier is placed: held at one whose calibration placed it, or an observation read
    past it (or there is none). If not, its edge and speedup are fitted from inside only, and a bigger
    model's prediction extrapolates them."""
    return held or params.cache_speedup <= 1.0 + 1e-6 or reach_bytes >= TIER_PAST * params.cache_bytes


def solve(table: DesignMatrix, device: DeviceSpec, source: str, tier: CacheTier | None = None) -> Fit:
    """Robust least squares on weighted log residuals plus the prior's; bounded, from the prior's centre
    (the cache tier's two parameters pinned where `tier` says, if given)."""
    centre, sigma = _prior(device)
    sqrt_w = np.sqrt(table.fit_weight)
    log_measured = np.log(table.measured_s)

    def residuals(x: np.ndarray) -> np.ndarray:
        params, call = from_vector(x, source)
        data = sqrt_w * (np.log(table.predict(params, call)) - log_measured)
        return np.concatenate([data, (x - centre) / sigma * ROBUST_SCALE])

    lower, upper = _block(2), _block(3)
    slower = np.where(np.arange(len(centre)) < 2 * N_CLASSES, np.log(0.3), 0.0)  # second start: η × 0.3
    first = centre.copy()
    first[CACHE_SPEEDUP] = np.log(START_CACHE_SPEEDUP)
    first[REFILL] = np.log(START_REFILL)
    if tier is not None:
        pinned = np.log([max(tier.cache_bytes, 1e5), max(tier.cache_speedup, 1.0)])
        at = slice(CACHE_SPEEDUP - 1, CACHE_SPEEDUP + 1)
        first[at], lower[at], upper[at] = pinned, pinned - 1e-6, pinned + 1e-6
    best = None
    for start in (first, first + slower):
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
    reach = float(np.max(table.working_set))
    return Fit(params, call, float(best.cost), len(table.step), reach, tier, table.classes_present())


def fit_models(
    models: Sequence[Profiled],
    kernels: Sequence[KernelResult],
    device: DeviceSpec,
    counting: Counting,
    source: str,
    tier: CacheTier | None = None,
) -> Fit:
    return solve(build_design(models, kernels, device, counting), device, source, tier)
