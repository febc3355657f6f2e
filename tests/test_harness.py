"""Timing harness and statistics: known distributions, the CI of the median, the stopping rule."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cobench.errors import InputError
from cobench.measure.stats import NOISY_CV, median_ci, summarize
from cobench.measure.timing import HarnessConfig, run


def test_summary_of_a_known_normal_distribution() -> None:
    rng = np.random.default_rng(1)
    s = summarize(rng.normal(10e-3, 0.1e-3, 20_000))
    assert s.median_s == pytest.approx(10e-3, rel=2e-3)
    assert s.std_s == pytest.approx(0.1e-3, rel=0.03)
    assert s.p90_s == pytest.approx(10e-3 + 1.2816 * 0.1e-3, rel=1e-3)
    assert s.iqr_s == pytest.approx(2 * 0.6745 * 0.1e-3, rel=0.05)
    assert s.cv == pytest.approx(0.01, rel=0.05) and not s.noisy
    assert s.median_ci_low_s < s.median_s < s.median_ci_high_s


def test_noisy_flag_on_a_wide_distribution() -> None:
    s = summarize(np.random.default_rng(2).exponential(1e-3, 1000))
    assert s.cv > NOISY_CV and s.noisy


@pytest.mark.parametrize("n", [9, 30, 200])
def test_median_ci_covers_the_true_median_at_the_stated_rate(n: int) -> None:
    """Exponential samples (skewed, like latencies): the order-statistic CI keeps >= 95 % coverage."""
    rng = np.random.default_rng(n)
    hits = sum(lo <= np.log(2) <= hi for lo, hi in (median_ci(rng.exponential(1.0, n)) for _ in range(1500)))
    assert hits / 1500 >= 0.93


@given(st.lists(st.floats(1e-6, 1.0), min_size=1, max_size=200))
def test_summary_invariants(xs: list[float]) -> None:
    s = summarize(np.asarray(xs))
    assert s.min_s <= s.median_ci_low_s <= s.median_s <= s.median_ci_high_s
    assert s.min_s <= s.median_s <= s.p90_s <= s.p95_s <= s.p99_s
    assert s.n == len(xs)


class FakeClock:
    """A deterministic clock: each step advances it by the duration it returns."""

    def __init__(self, durations: itertools.cycle) -> None:
        self.now = 0.0
        self.durations = durations

    def __call__(self) -> float:
        return self.now

    def step(self) -> float:
        d = next(self.durations)
        self.now += d
        return d


def test_stops_on_the_ci_once_minimums_are_met() -> None:
    clock = FakeClock(itertools.cycle([1e-3, 1.001e-3, 0.999e-3]))
    cfg = HarnessConfig(warmup_s=0.01, min_iters=10, min_time_s=0.05, max_time_s=5.0)
    s = run(clock.step, cfg, clock)
    assert s.stopped_by == "ci"
    assert len(s.samples_s) >= 50  # min_time_s / 1 ms
    assert s.warmup_iters >= 9 and s.first_s == pytest.approx(1e-3)


def test_noisy_step_runs_to_the_time_limit() -> None:
    rng = np.random.default_rng(3)
    clock = FakeClock(iter(lambda: float(rng.exponential(1e-3)), None))
    cfg = HarnessConfig(warmup_s=0.0, min_iters=5, min_time_s=0.01, max_time_s=0.2, target_rel_ci=1e-4)
    s = run(clock.step, cfg, clock)
    assert s.stopped_by == "max_time" and s.samples_s.sum() == pytest.approx(0.2, abs=0.02)


def test_iteration_cap() -> None:
    clock = FakeClock(itertools.cycle([1e-3, 2e-3]))
    s = run(clock.step, HarnessConfig(warmup_s=0, min_iters=3, min_time_s=100, max_time_s=1000, max_iters=25), clock)
    assert s.stopped_by == "max_iters" and len(s.samples_s) == 25


def test_real_clock_measures_a_sleep() -> None:
    import time

    s = run(
        lambda: (t := time.perf_counter(), time.sleep(0.002), time.perf_counter() - t)[-1],
        HarnessConfig(warmup_s=0.01, min_iters=5, min_time_s=0.05, max_time_s=1.0, target_rel_ci=0.05),
    )
    assert 0.002 <= float(np.median(s.samples_s)) < 0.02


def test_a_call_longer_than_the_warm_up_is_its_own_warm_up() -> None:
    """A 3 s kernel with a 0.5 s warm-up budget runs once to warm up, not twice."""
    clock = FakeClock(itertools.cycle([3.0]))
    s = run(clock.step, HarnessConfig(warmup_s=0.5, min_iters=10, min_time_s=1.0, max_time_s=5.0), clock)
    assert s.warmup_iters == 0 and s.stopped_by == "max_time" and len(s.samples_s) == 2


def test_harness_limits_are_named_and_checked() -> None:
    """By name only (positionally, profile's CI target once became max_iters and every phase took one sample), and
    a limit no run can meet is refused naming its field."""
    with pytest.raises(TypeError):
        HarnessConfig(0.5, 10, 1.0, 10.0, 0.01)  # type: ignore[misc]
    for bad, field in (
        ({"min_iters": 0}, "min_iters"),
        ({"max_iters": 0.01}, "max_iters"),
        ({"min_iters": 20, "max_iters": 10}, "max_iters"),
        ({"min_time_s": 2.0, "max_time_s": 1.0}, "max_time_s"),
        ({"warmup_s": float("nan")}, "warmup_s"),
        ({"target_rel_ci": -0.1}, "target_rel_ci"),
        ({"confidence": 1.0}, "confidence"),
    ):
        with pytest.raises(InputError, match=field):
            HarnessConfig(**bad)
    assert HarnessConfig(target_rel_ci=0.0).max_iters == 100_000
