"""Generation as a user waits for it: the prompt, then G − 1 decode steps each feeding the cache it
got back, every step timed where it happens.

A decode step repeated on one fixed cache is not the step a user experiences inside generation (the
cache grows, is fed back, and with graphs that return past ++ new it is copied every step), so TPOT is
taken from here: the median of each step position over the timed generations, averaged over the
generated range. The same generations give e2e, and e2e must equal TTFT + Σ steps up to the loop's own
overhead — a larger gap means time is spent where no step measures it, and is flagged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from cobench.measure import timing

E2E_TOLERANCE = 0.03  # |e2e / (TTFT + Σ steps) − 1| above this is flagged


class Generating(Protocol):
    """What generation needs of a runner (cobench/measure/runners Runner has it)."""

    def prefill(self, ids: np.ndarray) -> Any: ...

    def decode(self, ids: np.ndarray, cache: Any) -> Any: ...

    def timed(self, fn: Callable[[], Any]) -> float: ...


@dataclass(frozen=True)
class Generations:
    """The timed generations: prefill, each decode step and the whole, per generation (seconds)."""

    ttft_s: np.ndarray  # (n,)
    steps_s: np.ndarray  # (n, G − 1)
    e2e_s: np.ndarray  # (n,)

    @property
    def step_median_s(self) -> np.ndarray:
        """(G − 1,) median of each step position: step i runs against a cache of P + i positions."""
        return np.median(self.steps_s, axis=0) if self.steps_s.size else np.zeros(0)

    @property
    def tpot_s(self) -> float | None:
        """Time per output token as experienced: the step medians averaged over the generated range."""
        return float(self.step_median_s.mean()) if self.steps_s.size else None

    @property
    def parts_s(self) -> float:
        """Median over generations of TTFT + Σ steps: what the parts add up to."""
        return float(np.median(self.ttft_s + self.steps_s.sum(axis=1)))

    @property
    def gap(self) -> float:
        """e2e median over the parts' median, minus one: the share of a generation no step accounts for."""
        return float(np.median(self.e2e_s)) / self.parts_s - 1

    def to_json(self) -> dict[str, Any]:
        return {
            "ttft_in_generation_s": self.ttft_s.tolist(),
            "steps_s": self.steps_s.tolist(),
            "step_median_s": self.step_median_s.tolist(),
            "tpot_s": self.tpot_s,
            "parts_s": self.parts_s,
            "gap": self.gap,
        }


def fixed_step(step: Callable[[np.ndarray, Any], Any], ids: np.ndarray, cache: Any) -> Callable[[], Any]:
    """A step of an in-place cache (one with a `length`) at its context, again and again: the position it
    writes is restored before each call, so every call sees the same context."""
    context = cache.length

    def again() -> Any:
        cache.length = context
        return step(ids, cache)

    return again


def generate_once(
    runner: Generating, ids: np.ndarray, token: np.ndarray, generate: int
) -> tuple[float, list[float], float]:
    """One generation of G tokens, each part timed where it happens: (TTFT, the G − 1 steps, e2e) in seconds."""
    box: dict[str, Any] = {}
    t0 = time.perf_counter()
    ttft = runner.timed(lambda: box.__setitem__("cache", runner.prefill(ids)))
    steps = [
        runner.timed(lambda: box.__setitem__("cache", runner.decode(token, box["cache"]))) for _ in range(generate - 1)
    ]
    return ttft, steps, time.perf_counter() - t0


def time_generation(
    runner: Generating, ids: np.ndarray, token: np.ndarray, generate: int, cfg: timing.HarnessConfig
) -> tuple[timing.Samples, Generations]:
    """Generate G tokens again and again under the harness (its stopping rule on e2e); keep every step's
    time of the timed generations (warm-up and the first call are dropped)."""
    records: list[tuple[float, list[float], float]] = []

    def one() -> float:
        records.append(generate_once(runner, ids, token, generate))
        return records[-1][2]

    samples = timing.run(one, cfg)
    kept = records[len(records) - len(samples.samples_s) :]
    g = Generations(
        np.array([r[0] for r in kept]),
        np.array([r[1] for r in kept], dtype=float).reshape(len(kept), generate - 1),
        np.array([r[2] for r in kept]),
    )
    return samples, g
