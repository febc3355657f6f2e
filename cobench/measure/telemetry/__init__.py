"""Telemetry: sources behind one protocol, sampled in a background thread during timed windows.

A source's `read()` returns instantaneous values keyed with their unit (`power_mw`, `gpu_freq_mhz`,
`temp_gpu_c`, …) and, where the hardware has one, a cumulative `energy_mj` counter. Energy over a window
comes from the counter's difference when there is one (NVML total energy, RAPL), else from integrating
power (Jetson INA3221 rails). `select_source` picks by what runs where: a Jetson's sysfs (the module's power
covers CPU and GPU runs alike), NVML only when the runner is on the GPU (NVML sees the GPU's power, not a
CPU run's), else the CPU source.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy.integrate import trapezoid

DEFAULT_RATE_HZ = 20.0


class TelemetrySource(Protocol):
    name: str

    def read(self) -> dict[str, float]: ...

    def describe(self) -> dict[str, Any]:
        """Static facts (rails found, power mode, governor, …) and warnings such as unpinned clocks."""
        ...


@dataclass
class Series:
    """Samples of one window: times (s, monotonic) and one value list per key."""

    source: str
    t_s: list[float] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, t: float, sample: dict[str, float]) -> None:
        self.t_s.append(t)
        for key, value in sample.items():
            self.values.setdefault(key, [float("nan")] * (len(self.t_s) - 1)).append(value)
        for column in self.values.values():
            if len(column) < len(self.t_s):
                column.append(float("nan"))

    def energy_j(self) -> float | None:
        """Energy over the window: counter difference if present, else ∫ power dt (trapezoid)."""
        if len(self.t_s) < 2:
            return None
        counter = self.values.get("energy_mj")
        if counter and not np.isnan(counter[0]) and not np.isnan(counter[-1]):
            return (counter[-1] - counter[0]) / 1e3
        power = self.values.get("power_mw")
        if power:
            p = np.asarray(power)
            ok = ~np.isnan(p)
            if ok.sum() >= 2:
                return float(trapezoid(p[ok], np.asarray(self.t_s)[ok])) / 1e3
        return None

    def mean(self, key: str) -> float | None:
        column = self.values.get(key)
        if not column:
            return None
        value = float(np.nanmean(column)) if not np.all(np.isnan(column)) else None
        return value

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "t_s": self.t_s, "values": self.values}


class Sampler:
    """Polls a source every 1/rate_hz seconds in a daemon thread; use as a context manager."""

    def __init__(self, source: TelemetrySource, rate_hz: float = DEFAULT_RATE_HZ) -> None:
        self.source = source
        self.period_s = 1.0 / rate_hz
        self.series = Series(source.name)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cobench-telemetry", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.series.add(time.monotonic(), self.source.read())
            self._stop.wait(self.period_s)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.series.add(time.monotonic(), self.source.read())  # close the window with a final reading


GPU_RUNNERS = ("cuda", "tensorrt")


def select_source(
    kind: str = "auto", runner_device: str = "cpu", root: Path = Path("/"), cuda_device: int = 0
) -> TelemetrySource:
    """Explicit order: Jetson sysfs (NVML is absent on Orin), NVML for a GPU run, then the CPU source."""
    from cobench.measure.telemetry.cpu import CpuSource
    from cobench.measure.telemetry.jetson import JetsonSource
    from cobench.measure.telemetry.nvml import NvmlSource

    if kind in ("auto", "jetson"):
        source = JetsonSource.open(root)
        if source is not None or kind == "jetson":
            return source or _missing("jetson", "no Jetson sysfs found (/etc/nv_tegra_release, INA3221 rails)")
    if kind == "nvml" or (kind == "auto" and runner_device in GPU_RUNNERS):
        nvml = NvmlSource.open(cuda_device)
        if nvml is not None or kind == "nvml":
            return nvml or _missing("nvml", "NVML is not available (nvidia-ml-py and an NVIDIA driver are needed)")
    return CpuSource(root)


def _missing(kind: str, why: str) -> TelemetrySource:
    from cobench.errors import MissingDependency

    raise MissingDependency(f"telemetry source {kind}: {why}")
