"""Generation timed step by step: TPOT is the experienced step, and the parts add up to the whole."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cobench.measure.generation import Generations, time_generation
from cobench.measure.timing import HarnessConfig


class GrowingCache:
    """A stand-in runner whose decode step costs more as the cache grows (as a concat graph's does)."""

    def __init__(self, base_s: float, per_position_s: float) -> None:
        self.base_s, self.per_position_s = base_s, per_position_s

    def prefill(self, ids: np.ndarray) -> int:
        time.sleep(self.base_s)
        return ids.shape[1]

    def decode(self, ids: np.ndarray, cache: int) -> int:
        time.sleep(self.base_s + self.per_position_s * cache)
        return cache + 1

    def timed(self, fn) -> float:  # noqa: ANN001
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0


def test_steps_are_timed_where_they_happen_and_add_up() -> None:
    runner = GrowingCache(0.001, 0.0002)
    cfg = HarnessConfig(warmup_s=0.0, min_iters=3, min_time_s=0.0, max_time_s=2.0, target_rel_ci=0.5)
    samples, g = time_generation(runner, np.zeros((1, 8), dtype=np.int64), np.zeros((1, 1)), 6, cfg)
    assert g.steps_s.shape == (len(samples.samples_s), 5) and len(g.e2e_s) == len(samples.samples_s)
    medians = g.step_median_s
    assert medians[-1] > medians[0]  # the cache grew: later steps cost more, as a user sees
    assert g.tpot_s == pytest.approx(medians.mean())
    assert abs(g.gap) < 0.03  # only the loop's own overhead lies between the parts


@given(
    ttft=st.floats(1e-4, 1.0),
    steps=st.lists(st.floats(1e-5, 0.1), min_size=1, max_size=20),
    overhead=st.floats(0.0, 0.5),
)
def test_gap_is_the_unaccounted_share(ttft: float, steps: list[float], overhead: float) -> None:
    parts = ttft + sum(steps)
    g = Generations(np.array([ttft]), np.array([steps]), np.array([parts * (1 + overhead)]))
    assert g.parts_s == pytest.approx(parts) and g.gap == pytest.approx(overhead, abs=1e-9)
    assert g.tpot_s == pytest.approx(np.mean(steps))
