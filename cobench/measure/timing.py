"""The timing harness: warm up by time, then sample until the median is known well enough.

It knows nothing about backends: it calls `step()`, which performs one operation and returns its
duration in seconds as the runner measured it (host clock after a synchronise, or CUDA events).
The first call is recorded separately (it includes lazy initialisation). Iterations are adaptive:
at least `min_iters` and `min_time_s`, then stop as soon as the 95 % CI of the median is within
±`target_rel_ci`, or at `max_time_s` / `max_iters` (and say which).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cobench.errors import InputError
from cobench.measure.stats import CONFIDENCE, median_ci
from cobench.validate import number

Step = Callable[[], float]


@dataclass(frozen=True, kw_only=True)
class HarnessConfig:
    """The harness's limits, by name only: given positionally, `profile`'s CI target once landed in `max_iters`
    (0.01), and every phase of every round stopped after one sample from 2026-12-02 to 12-07."""

    warmup_s: float = 0.5
    min_iters: int = 10
    min_time_s: float = 1.0
    max_time_s: float = 10.0
    max_iters: int = 100_000
    target_rel_ci: float = 0.01
    confidence: float = CONFIDENCE

    def __post_init__(self) -> None:
        for name in ("min_iters", "max_iters"):
            number(getattr(self, name), name, integer=True, low=1)
        for name in ("warmup_s", "min_time_s", "max_time_s", "target_rel_ci"):
            number(getattr(self, name), name, low=0)
        if self.max_iters < self.min_iters:
            raise InputError("max_iters", f"{self.max_iters} is below min_iters ({self.min_iters})")
        if self.max_time_s < self.min_time_s:
            raise InputError("max_time_s", f"{self.max_time_s} s is below min_time_s ({self.min_time_s} s)")
        if not 0 < self.confidence < 1:
            raise InputError("confidence", f"must lie strictly between 0 and 1; got {self.confidence!r}")


@dataclass(frozen=True)
class Samples:
    """Raw result of a timed run; statistics are computed from it by `stats.summarize`."""

    first_s: float
    warmup_iters: int
    samples_s: np.ndarray
    stopped_by: str  # "ci" | "max_time" | "max_iters"
    wall_s: float


def rel_ci(samples: list[float], confidence: float) -> float:
    median = float(np.median(samples))
    low, high = median_ci(np.asarray(samples), confidence)
    return (high - low) / 2 / median if median > 0 else float("inf")


def run(step: Step, cfg: HarnessConfig = HarnessConfig(), clock: Callable[[], float] = time.perf_counter) -> Samples:
    """Time `step` with a time-based warm-up and a CI-of-the-median stopping rule."""
    start = clock()
    first = step()
    warm_end = clock() + max(cfg.warmup_s - first, 0.0)  # the first call counts toward the warm-up
    warmup = 0
    while clock() < warm_end:
        step()
        warmup += 1
    samples: list[float] = []
    begin = clock()
    next_check = cfg.min_iters
    stopped_by = "max_iters"
    while len(samples) < cfg.max_iters:
        samples.append(step())
        elapsed = clock() - begin
        if elapsed >= cfg.max_time_s:
            stopped_by = "max_time"
            break
        if len(samples) >= next_check and elapsed >= cfg.min_time_s:
            if rel_ci(samples, cfg.confidence) <= cfg.target_rel_ci:
                stopped_by = "ci"
                break
            next_check = len(samples) + max(1, len(samples) // 10)  # checking costs O(n log n): check every ~10 %
    return Samples(first, warmup, np.asarray(samples), stopped_by, clock() - start)
