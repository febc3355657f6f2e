"""Jetson discovery from files: L4T release, board model, nvpmodel mode, INA3221 rails, GPU devfreq.

NVML is effectively absent on Orin, so everything comes from /etc and sysfs. Every function takes a
`root` (default "/") so tests run against a recorded tree of a real board. Parsers are pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# The module's input rail where one is measured (Orin NX/Nano: VDD_IN; Nano: POM_5V_IN). AGX Orin and Thor
# measure no input rail (VIN_SYS_5V0 is only the 5 V system rail): their total is the sum of the rails, as
# jtop computes it and as a recorded AGX Orin power log reads it ("no VDD_IN rail ... total = sum").
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")
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
    label: str
    voltage_path: Path
    current_path: Path


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


def find_rails(root: Path) -> list[Rail]:
    """INA3221 channels with a real label (skips 'NC' and the 'sum of shunt voltages' channel)."""
    rails = []
    for label_path in sorted(root.glob("sys/bus/i2c/devices/*/hwmon/hwmon*/in*_label")):
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
