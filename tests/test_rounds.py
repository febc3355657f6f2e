"""Rounds and interference: the odd round out is replaced, disturbance seen by the OS is named."""

from __future__ import annotations

import pytest

from cobench.measure.interference import Snapshot, between
from cobench.measure.result import Measured
from cobench.measure.rounds import bad_rounds, choose, combine


def m(ttft: float, tpot: float) -> Measured:
    return Measured(ttft, tpot, ttft + 15 * tpot, {256: tpot})


def test_a_round_that_disagrees_is_replaced_by_the_remeasured_one() -> None:
    rounds = {0: m(10e-3, 2e-3), 1: m(10.1e-3, 2.6e-3), 2: m(9.9e-3, 2.02e-3), 3: m(10.05e-3, 2.01e-3)}
    assert set(bad_rounds(rounds, {}, [0, 1, 2])) == {1}
    chosen, left, replaced = choose(3, rounds, {})
    assert chosen == [0, 3, 2] and left == {} and replaced == 1
    c = combine([rounds[r] for r in chosen], left, replaced)
    assert c.tpot_s == pytest.approx(2.01e-3) and c.rounds == 3 and c.remeasured == 1
    assert c.repeatability["tpot"] < 0.01 and c.ttft_ci_s == (9.9e-3, 10.05e-3)


def test_interference_marks_a_round_even_when_its_numbers_look_fine() -> None:
    rounds = {0: m(10e-3, 2e-3), 1: m(10e-3, 2e-3), 2: m(10e-3, 2e-3)}
    chosen, left, replaced = choose(3, rounds, {1: ["other processes kept 1.90 cores busy"]})
    assert chosen == [0, 1, 2] and replaced == 0 and "1.90 cores" in left[1]  # nothing to replace it with
    c = combine([rounds[r] for r in chosen], left, replaced, frozenset({1}))
    assert c.interference and "INTERFERENCE" in c.flags


def test_two_rounds_cannot_name_an_odd_one() -> None:
    assert bad_rounds({0: m(1.0, 1.0), 1: m(2.0, 2.0)}, {}, [0, 1]) == {}


def test_interference_from_snapshots() -> None:
    start = Snapshot(0.0, busy_s=100.0, steal_s=5.0, total_s=400.0, own_s=10.0, clock_mhz=3000.0)
    quiet = Snapshot(2.0, busy_s=102.1, steal_s=5.0, total_s=404.0, own_s=12.0, clock_mhz=3000.0)
    assert between(start, quiet).reasons == []  # the worker's own 2 s of CPU is not interference
    hog = Snapshot(2.0, busy_s=106.0, steal_s=5.4, total_s=404.0, own_s=12.0, clock_mhz=2400.0)
    i = between(start, hog)
    assert i.other_cores == pytest.approx(2.0) and i.steal_share == pytest.approx(0.1)
    assert len(i.reasons) == 3 and i.clock_change == pytest.approx(-0.2)
