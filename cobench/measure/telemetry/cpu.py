"""CPU telemetry: utilisation, frequency and RSS (psutil) and package energy from RAPL where readable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psutil

RAPL = "sys/class/powercap/intel-rapl:0"


class CpuSource:
    name = "cpu"

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root
        self.process = psutil.Process(os.getpid())
        self.rapl = root / RAPL / "energy_uj"
        self.rapl_max_uj = _read_int(root / RAPL / "max_energy_range_uj")
        self._last_uj: int | None = None
        self._wraps = 0
        psutil.cpu_percent(None)  # the first call primes the counters

    def read(self) -> dict[str, float]:
        sample = {"cpu_util_pct": psutil.cpu_percent(None), "rss_mb": self.process.memory_info().rss / 1e6}
        freq = psutil.cpu_freq()
        if freq is not None and freq.current:
            sample["cpu_freq_mhz"] = freq.current
        uj = _read_int(self.rapl)
        if uj is not None:
            if self._last_uj is not None and uj < self._last_uj and self.rapl_max_uj:
                self._wraps += 1  # the counter wrapped at max_energy_range_uj
            self._last_uj = uj
            sample["energy_mj"] = (uj + self._wraps * (self.rapl_max_uj or 0)) / 1e3
        return sample

    def describe(self) -> dict[str, Any]:
        governor = _read_text(self.root / "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
        warnings = []
        if governor and governor != "performance":
            warnings.append(f"CPU frequency governor is {governor!r}, not 'performance': clocks are not pinned")
        if not self.rapl.exists() or _read_int(self.rapl) is None:
            warnings.append("RAPL energy counter not readable: no energy per token on this CPU")
        return {"source": "cpu", "governor": governor, "rapl": _read_int(self.rapl) is not None, "warnings": warnings}


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    return int(text) if text and text.lstrip("-").isdigit() else None
