"""Rounds: each candidate measured in several short rounds, interleaved in a random order across all the
candidates of a run (as Google Benchmark's random interleaving does), because on a shared machine speed
drifts between windows and one window per candidate cannot average that out.

The estimate is the median of the round medians; the spread of the round medians is the repeatability
reported beside it. A round that disagrees with the others (its TTFT or TPOT more than DISAGREE from
their median) or that the OS saw disturbed (measure/interference.py) is measured once more, and the new
round takes its place; if that one is bad too, the result says so.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from cobench.measure.result import Measured

DISAGREE = 0.05  # a round median this far (relative) from the median of the rounds is re-measured
METRICS = ("ttft", "tpot", "e2e")


def bad_rounds(measured: dict[int, Measured], reasons: dict[int, list[str]], chosen: list[int]) -> dict[int, str]:
    """Rounds among `chosen` that saw interference or disagree with the others, with why."""
    found: dict[int, str] = {}
    for metric in ("ttft", "tpot"):
        values = np.array([getattr(measured[r], f"{metric}_s") for r in chosen])
        if len(values) < 3:  # with two rounds neither can be told to be the odd one
            continue
        centre = float(np.median(values))
        for r, v in zip(chosen, values, strict=True):
            if abs(v / centre - 1) > DISAGREE:
                found.setdefault(r, f"{metric.upper()} {v / centre - 1:+.0%} from the other rounds")
    for r in chosen:
        if reasons.get(r):
            found[r] = "; ".join(reasons[r])
    return found


def choose(
    n_rounds: int, measured: dict[int, Measured], reasons: dict[int, list[str]]
) -> tuple[list[int], dict[int, str], int]:
    """The rounds to combine: the first n_rounds, each bad one replaced by the next re-measured round
    (numbered n_rounds and up, in the order they were run). Returns them, the bad rounds left, and the
    number replaced."""
    chosen = list(range(n_rounds))
    extras = sorted(r for r in measured if r >= n_rounds)
    replaced = 0
    for r in sorted(bad_rounds(measured, reasons, chosen)):
        if extras:
            chosen[chosen.index(r)] = extras.pop(0)
            replaced += 1
    return chosen, bad_rounds(measured, reasons, chosen), replaced


def _median_dict(dicts: list[dict[int, float]]) -> dict[int, float]:
    keys = set.intersection(*(set(d) for d in dicts)) if dicts else set()
    return {k: float(np.median([d[k] for d in dicts])) for k in sorted(keys)}


def _median(values: list[Any]) -> Any:
    known = [v for v in values if v is not None]
    return float(np.median(known)) if known else None


def combine(
    rounds: list[Measured], left_bad: dict[int, str], replaced: int, disturbed: frozenset[int] = frozenset()
) -> Measured:
    """One result from the chosen rounds: medians of the round medians, the rounds' spread as repeatability
    (coefficient of variation of the round medians), and the CI of the TTFT as the rounds' range. Bad rounds
    left are warnings; those the OS saw disturbed (`disturbed`) are also the result's interference."""
    first = rounds[0]
    ttft = [m.ttft_s for m in rounds]
    repeatability = {}
    if len(rounds) > 1:
        for k in METRICS:
            values = np.array([getattr(m, f"{k}_s") for m in rounds])
            repeatability[k] = float(np.std(values, ddof=1) / np.mean(values))
    warnings = list(dict.fromkeys(w for m in rounds for w in m.warnings))
    warnings += [f"round {r}: {why} (measured again, still off)" for r, why in sorted(left_bad.items())]
    return replace(
        first,
        ttft_s=float(np.median(ttft)),
        ttft_ci_s=(min(ttft), max(ttft)) if len(rounds) > 1 else first.ttft_ci_s,
        tpot_s=float(np.median([m.tpot_s for m in rounds])),
        e2e_s=float(np.median([m.e2e_s for m in rounds])),
        decode_s=_median_dict([m.decode_s for m in rounds]),
        fixed_decode_s=_median_dict([m.fixed_decode_s for m in rounds]),
        prefill_isolated_s=_median([m.prefill_isolated_s for m in rounds]),
        e2e_parts_s=_median([m.e2e_parts_s for m in rounds]),
        e2e_gap=_median([m.e2e_gap for m in rounds]),
        energy_per_token_j=_median([m.energy_per_token_j for m in rounds]),
        energy_per_generation_j=_median([m.energy_per_generation_j for m in rounds]),
        mean_power_mw=_median([m.mean_power_mw for m in rounds]),
        idle_power_mw=_median([m.idle_power_mw for m in rounds]),
        noisy=tuple(sorted({p for m in rounds for p in m.noisy})),
        throttled=any(m.throttled for m in rounds),
        warnings=tuple(warnings),
        rounds=len(rounds),
        repeatability=repeatability,
        remeasured=replaced,
        interference=tuple(f"round {r}: {why}" for r, why in sorted(left_bad.items()) if r in disturbed),
    )
