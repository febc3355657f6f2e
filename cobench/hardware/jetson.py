"""Jetson discovery from files: L4T release, board model, nvpmodel mode, power rails, GPU devfreq.

Rails come from the hwmon devices whose driver is a power monitor: INA3221 channels (mV and mA) on every
Orin and Thor module, and on AGX Thor the carrier board's INA238 on the module input (`power1_input`, in µW,
as the kernel's hwmon ABI gives power), which is the board's total. Any other I²C hwmon device (temperature
sensors, fan controllers) is not a rail, whatever its files are called.

NVML is effectively absent on Orin, so everything comes from /etc and sysfs. Every function takes a
`root` (default "/") so tests run against a recorded tree of a real board. Parsers are pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# The module's input rail where one is measured (Thor: the INA238's VIN; Orin NX/Nano: VDD_IN; Nano:
# POM_5V_IN). AGX Orin (and Thor without the INA238 driver) measure no input rail (VIN_SYS_5V0 is only
# the 5 V system rail): their total is the sum of the rails, as jtop computes it and as a recorded AGX
# Orin power log reads it ("no VDD_IN rail ... total = sum").
TOTAL_RAILS = ("VIN", "VDD_IN", "POM_5V_IN")
INPUT_MONITOR = "ina238"  # one channel, the module input: labelled VIN (as jtop does)
SUM_OF_RAILS = "sum of rails"
GPU_DEVFREQ = re.compile(r"(ga10b|gv11b|gp10b|gm20b|\.gpu$|^gpu-gpc)")


def parse_l4t_release(text: str) -> str | None:
    """'# R36 (release), REVISION: 4.4, ...' → 'R36.4.4'."""
    m = re.search(r"R(\d+) \(release\), REVISION: ([\d.]+)", text)
    return f"R{m.group(1)}.{m.group(2)}" if m else None


def parse_nvpmodel(text: str) -> tuple[str | None, int | None]:
    """`nvpmodel -q [--verbose]` → (mode name, id); handles the verbose and one-line forms."""
    m = re.search(r"NV Power Mode(?:\[\d+\])?:\s*(\S+)\s*(\d+)?", text)
    if not m:
        return None, None
    return m.group(1), int(m.group(2)) if m.group(2) else None


@dataclass(frozen=True)
class Rail:
    """One measured rail: power from voltage × current, or read directly (µW) where the monitor has it."""

    label: str
    voltage_path: Path
    current_path: Path
    power_path: Path | None = None


@dataclass(frozen=True)
class JetsonInfo:
    l4t: str | None
    model: str | None
    rails: list[Rail] = field(default_factory=list)
    total_rail: str | None = None
    gpu_devfreq: Path | None = None

    @property
    def present(self) -> bool:
        return self.l4t is not None or (self.model is not None and "jetson" in self.model.lower())


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip("\x00\n ")
    except OSError:  # disabled INA3221 channels answer reads with EIO
        return None


def _monitors(root: Path, driver: str) -> list[Path]:
    """hwmon folders of I²C devices bound to `driver` (the hwmon `name` file names it)."""
    return [h for h in sorted(root.glob("sys/bus/i2c/devices/*/hwmon/hwmon*")) if _read(h / "name") == driver]


def find_rails(root: Path) -> list[Rail]:
    """The INA238 input rail first (Thor), then INA3221 channels with a real label (skips 'NC' and the 'sum of
    shunt voltages' channel)."""
    rails = [
        Rail("VIN", h / "in1_input", h / "curr1_input", h / "power1_input")
        for h in _monitors(root, INPUT_MONITOR)
        if (h / "power1_input").exists()
    ]
    for hwmon in _monitors(root, "ina3221"):
        for label_path in sorted(hwmon.glob("in*_label")):
            label = _read(label_path)
            k = label_path.name[2:-6]
            current = label_path.with_name(f"curr{k}_input")
            if not label or label == "NC" or "sum of shunt" in label or not current.exists():
                continue
            rails.append(Rail(label, label_path.with_name(f"in{k}_input"), current))
    return rails


def find_gpu_devfreq(root: Path) -> Path | None:
    for node in sorted(root.glob("sys/class/devfreq/*")):
        if GPU_DEVFREQ.search(node.name):
            return node
    return None


def discover(root: Path = Path("/")) -> JetsonInfo:
    release = _read(root / "etc/nv_tegra_release")
    rails = find_rails(root)
    labels = [r.label for r in rails]
    return JetsonInfo(
        l4t=parse_l4t_release(release) if release else None,
        model=_read(root / "proc/device-tree/model"),
        rails=rails,
        total_rail=next((t for t in TOTAL_RAILS if t in labels), SUM_OF_RAILS if labels else None),
        gpu_devfreq=find_gpu_devfreq(root),
    )
