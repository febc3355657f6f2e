"""Interference: what else the machine did while a round was measured, asked of the OS.

A process hogging a core can slow a candidate 3× with a low CV, which no statistic of the samples can
see; the OS can. Around each round the worker snapshots system-wide CPU time, its own CPU time, steal
time and the CPU clock; the difference says how many cores other processes kept busy, what share the
hypervisor stole, and whether the clock moved. A round over the thresholds is re-measured (or flagged).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

OTHER_CORES_LIMIT = 0.25  # other processes busier than a quarter of a core during the round
STEAL_LIMIT = 0.05  # more than 5 % of CPU time stolen by the hypervisor
CLOCK_CHANGE_LIMIT = 0.05  # the CPU clock moved by more than 5 % between start and end


@dataclass(frozen=True)
class Snapshot:
    wall_s: float
    busy_s: float  # all CPUs: user + nice + system + irq + softirq (+ guest), seconds
    steal_s: float
    total_s: float  # all CPU time, idle included
    own_s: float  # this process's CPU time (all its threads)
    clock_mhz: float | None


def snapshot() -> Snapshot:
    """Now, from psutil (the shell edge: this reads /proc)."""
    import psutil

    t = psutil.cpu_times()
    busy = sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq"))
    own = psutil.Process(os.getpid()).cpu_times()
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError):  # VMs and containers often have no cpufreq
        freq = None
    return Snapshot(
        time.perf_counter(),
        busy,
        getattr(t, "steal", 0.0),
        sum(t),
        own.user + own.system,
        float(freq.current) if freq and freq.current else None,
    )


@dataclass(frozen=True)
class Interference:
    """Between two snapshots: cores other processes kept busy, the stolen share, the clock change."""

    seconds: float
    other_cores: float
    steal_share: float
    clock_change: float | None

    @property
    def reasons(self) -> list[str]:
        """Why this round's numbers cannot be trusted as they are (empty when quiet)."""
        found = []
        if self.other_cores > OTHER_CORES_LIMIT:
            found.append(f"other processes kept {self.other_cores:.2f} cores busy")
        if self.steal_share > STEAL_LIMIT:
            found.append(f"{self.steal_share:.0%} of CPU time stolen by the hypervisor")
        if self.clock_change is not None and abs(self.clock_change) > CLOCK_CHANGE_LIMIT:
            found.append(f"CPU clock changed by {self.clock_change:+.0%}")
        return found

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"reasons": self.reasons}


def between(start: Snapshot, end: Snapshot) -> Interference:
    wall = max(end.wall_s - start.wall_s, 1e-9)
    other = max((end.busy_s - start.busy_s) - (end.own_s - start.own_s), 0.0)
    total = end.total_s - start.total_s
    clock = end.clock_mhz / start.clock_mhz - 1 if start.clock_mhz and end.clock_mhz else None
    return Interference(wall, other / wall, (end.steal_s - start.steal_s) / total if total > 0 else 0.0, clock)
