"""Jetson telemetry from sysfs: INA3221 / INA238 rails, GPU devfreq, thermal zones; tegrastats as a fallback.

Power per rail = in<k>_input (mV) · curr<k>_input (mA) / 1000 → mW, or power1_input (µW) / 1000 where the
monitor measures power itself (Thor's INA238); the total is the input rail (VIN, VDD_IN) where the board
measures one, else the sum of the rails (see `cobench.hardware.jetson.TOTAL_RAILS`). GPU load is per-mille in
`device/load` on Orin; Thor's `gpu-gpc-0` has no load file (its GPU load comes from NVML, which Thor has).
Clocks are Hz in the devfreq node. Clocks are "pinned" when devfreq min_freq == max_freq
(what `jetson_clocks` sets).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from cobench.hardware.jetson import SUM_OF_RAILS, JetsonInfo, Rail, discover, parse_nvpmodel


class JetsonSource:
    name = "jetson"

    def __init__(self, root: Path, info: JetsonInfo) -> None:
        self.root = root
        self.info = info
        self.zones = [
            (z, (z / "type").read_text().strip())
            for z in sorted(root.glob("sys/class/thermal/thermal_zone*"))
            if (z / "type").exists()
        ]

    @classmethod
    def open(cls, root: Path = Path("/")) -> JetsonSource | None:
        info = discover(root)
        return cls(root, info) if info.present and info.rails else None

    def read(self) -> dict[str, float]:
        sample: dict[str, float] = {}
        total = 0.0
        for rail in self.info.rails:
            mw = _rail_mw(rail)
            if mw is None:
                continue
            sample[f"rail_{rail.label}_mw"] = mw
            total += mw
        if self.info.total_rail and self.info.total_rail != SUM_OF_RAILS:
            sample["power_mw"] = sample.get(f"rail_{self.info.total_rail}_mw", float("nan"))
        elif sample:
            sample["power_mw"] = total
        node = self.info.gpu_devfreq
        if node is not None:
            freq = _number(node / "cur_freq")
            if freq is not None:
                sample["gpu_freq_mhz"] = freq / 1e6
            load = _number(node / "device/load")
            if load is not None:
                sample["gpu_load_pct"] = load / 10
        for zone, kind in self.zones:
            milli_c = _number(zone / "temp")
            if milli_c is not None and milli_c > -200_000:  # absent sensors read -256 C
                sample[f"temp_{kind.removesuffix('-thermal')}_c"] = milli_c / 1000
        return sample

    def describe(self) -> dict[str, Any]:
        node = self.info.gpu_devfreq
        facts: dict[str, Any] = {
            "source": "jetson",
            "l4t": self.info.l4t,
            "model": self.info.model,
            "rails": [r.label for r in self.info.rails],
            "total_rail": self.info.total_rail,
        }
        warnings = []
        if node is not None:
            lo, hi = _number(node / "min_freq"), _number(node / "max_freq")
            facts |= {
                "gpu_devfreq": node.name,
                "gpu_min_freq_hz": lo,
                "gpu_max_freq_hz": hi,
                "gpu_governor": _text(node / "governor"),
            }
            if not (node / "device/load").exists():
                facts["gpu_load"] = "not in devfreq on this board (Thor): from NVML"
            if lo is not None and hi is not None and lo < hi:
                warnings.append(f"GPU clock not pinned ({lo / 1e6:.0f}-{hi / 1e6:.0f} MHz): run `sudo jetson_clocks`")
        nvpmodel = shutil.which("nvpmodel")
        if nvpmodel:
            out = subprocess.run([nvpmodel, "-q"], capture_output=True, text=True, timeout=10, check=False).stdout
            facts["power_mode"], facts["power_mode_id"] = parse_nvpmodel(out)
        else:
            warnings.append("nvpmodel not found: the power mode is not recorded")
        return facts | {"warnings": warnings}


def _rail_mw(rail: Rail) -> float | None:
    if rail.power_path is not None:
        uw = _number(rail.power_path)
        return None if uw is None else uw / 1000
    mv, ma = _number(rail.voltage_path), _number(rail.current_path)
    return None if mv is None or ma is None else mv * ma / 1000


def _text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:  # disabled INA3221 channels answer with EIO
        return None


def _number(path: Path) -> float | None:
    text = _text(path)
    try:
        return float(text) if text else None
    except ValueError:
        return None


TEGRA_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]+) (\d+)mW/(\d+)mW")
TEGRA_TEMP = re.compile(r"\b([A-Za-z]+\d*)@(-?[\d.]+)C\b")
TEGRA_GPU = re.compile(r"GR3D_FREQ (\d+)?%?@?\[?(\d+)?")
TEGRA_RAM = re.compile(r"RAM (\d+)/(\d+)MB")


def parse_tegrastats(line: str) -> dict[str, float]:
    """One tegrastats line → unit-named values (rails mW, temps C, GPU load %, GPU MHz, RAM MB).

    Handles the JP5/JP6/JP7 forms: `GR3D_FREQ 0%@0`, `39%@[305,0]`, `0%`, Thor's `@[0,0,0]`; "NC" rails and
    absent sensors (-256 C) are skipped. The total is VDD_IN when present, else the sum of the rails.
    """
    sample: dict[str, float] = {}
    ram = TEGRA_RAM.search(line)
    if ram:
        sample["ram_used_mb"], sample["ram_total_mb"] = float(ram.group(1)), float(ram.group(2))
    gpu = TEGRA_GPU.search(line)
    if gpu:
        if gpu.group(1) is not None:
            sample["gpu_load_pct"] = float(gpu.group(1))
        if gpu.group(2) is not None:
            sample["gpu_freq_mhz"] = float(gpu.group(2))
    for name, celsius in TEGRA_TEMP.findall(line):
        if float(celsius) > -200:  # absent sensors print -256C
            sample[f"temp_{name.lower()}_c"] = float(celsius)
    rails = {name: float(now) for name, now, _ in TEGRA_RAIL.findall(line) if name != "NC"}
    for name, mw in rails.items():
        sample[f"rail_{name}_mw"] = mw
    if rails:
        sample["power_mw"] = rails.get("VDD_IN", rails.get("POM_5V_IN", sum(rails.values())))
    return sample
