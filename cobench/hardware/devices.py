"""Device catalogue: typed, cited hardware numbers loaded from devices/*.yaml and validated.

Every number is a `Quantity` with its source (and the formula where it is derived, e.g. sparse ÷ 2),
so a user can see where a roofline ceiling comes from. Tensor peaks are dense. A power mode scales
the compute peaks by its clock and active SMs and replaces the bandwidth; the result is a new spec.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cobench.catalogue import data_files
from cobench.errors import InputError
from cobench.files import read_mapping
from cobench.predict.operators import OP_CLASSES
from cobench.validate import mapping, number, sequence, show, text

MAX_QUANTITY = 1e9  # no peak (TFLOP/s), bandwidth (GB/s), memory (GB), clock (MHz) or power (W) is near it

DEVICE_KINDS = ("jetson", "gpu", "cpu")
PEAK_KEYS = (
    "fp32",
    "fp16",
    "bf16",
    "int8",
    "tf32_tensor",
    "fp16_tensor",
    "bf16_tensor",
    "fp8_tensor",
    "int8_tensor",
)


@dataclass(frozen=True)
class Quantity:
    value: float
    source: str
    derived: str = ""
    uncertain: bool = False


@dataclass(frozen=True)
class PowerMode:
    """A Jetson nvpmodel mode; unset caps inherit the device maximum (and say so via `uncertain`)."""

    name: str
    id: int | None = None
    gpu_clock_mhz: float | None = None
    sm_count: int | None = None
    memory_bandwidth_gbps: float | None = None
    power_budget_w: float | None = None
    uncertain: bool = False
    note: str = ""


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    display_name: str
    kind: str
    memory_gb: Quantity
    memory_bandwidth_gbps: Quantity
    peak_tflops: dict[str, Quantity]
    reserved_memory_gb: Quantity
    roofline: dict[str, Any] = field(default_factory=dict)
    l2_mb: Quantity | None = None
    sm_count: Quantity | None = None
    gpu_clock_mhz: Quantity | None = None
    power_max_w: Quantity | None = None
    power_min_w: Quantity | None = None
    power_modes: tuple[PowerMode, ...] = ()
    default_mode: str | None = None
    modes_source: str = ""
    mode: str | None = None  # the mode this spec describes (None: the datasheet maximum)
    path: str = ""

    def peak_flops(self, keys: tuple[str, ...]) -> float:
        """FLOP/s of the first peak in a precision's fallback chain that this device lists."""
        for key in keys:
            if key in self.peak_tflops:
                return self.peak_tflops[key].value * 1e12
        raise InputError(f"device {self.name}.peak_tflops", f"lists none of {', '.join(keys)}")

    @property
    def runner(self) -> str:
        """Where this device's kernels and profiles run: its CPU, or CUDA on a GPU or a Jetson."""
        return "cpu" if self.kind == "cpu" else "cuda"

    @property
    def bandwidth_bytes_s(self) -> float:
        return self.memory_bandwidth_gbps.value * 1e9

    @property
    def usable_memory_bytes(self) -> float:
        return (self.memory_gb.value - self.reserved_memory_gb.value) * 1e9

    def in_mode(self, name: str | None) -> DeviceSpec:
        """The spec at a power mode (default: the catalogue's default mode, or the maximum if none)."""
        name = name or self.default_mode
        if name is None:
            return self
        modes = {m.name: m for m in self.power_modes}
        if name not in modes:
            known = ", ".join(modes) or "none"
            raise InputError("power_mode", f"{self.name} has no power mode {name!r} (modes: {known})")
        m = modes[name]
        scale = 1.0
        how = []
        if m.gpu_clock_mhz and self.gpu_clock_mhz:
            scale *= m.gpu_clock_mhz / self.gpu_clock_mhz.value
            how.append(f"x {m.gpu_clock_mhz:g}/{self.gpu_clock_mhz.value:g} MHz")
        if m.sm_count and self.sm_count:
            scale *= m.sm_count / self.sm_count.value
            how.append(f"x {m.sm_count}/{self.sm_count.value:g} SMs")
        note = f"scaled to {name} " + " ".join(how) if how else f"{name}: caps unknown, maximum assumed"
        peaks = {
            k: replace(
                q,
                value=q.value * scale,
                derived=f"{q.derived + '; ' if q.derived else ''}{note}",
                uncertain=q.uncertain or m.uncertain or not how,
            )
            for k, q in self.peak_tflops.items()
        }
        bw = self.memory_bandwidth_gbps
        if m.memory_bandwidth_gbps:
            bw = Quantity(m.memory_bandwidth_gbps, f"power mode {name}: {self.modes_source}", uncertain=m.uncertain)
        return replace(self, peak_tflops=peaks, memory_bandwidth_gbps=bw, mode=name)


def _quantity(data: Any, where: str, optional: bool = False) -> Quantity | None:
    if data is None:
        if optional:
            return None
        raise InputError(where, "required field is missing")
    if not isinstance(data, dict) or "value" not in data:
        raise InputError(where, "expected a mapping with value and source, e.g. {value: 102.4, source: ...}")
    unknown = set(data) - {"value", "source", "derived", "uncertain"}
    if unknown:
        raise InputError(f"{where}.{sorted(unknown)[0]}", "unknown field (known: value, source, derived, uncertain)")
    value = data["value"]
    if value == "auto" and where.endswith("memory_gb"):
        value = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    value = number(value, f"{where}.value", low=0, open_low=True, high=MAX_QUANTITY)
    source = data.get("source")
    if not isinstance(source, str) or not source.strip():
        raise InputError(f"{where}.source", "every number needs its source")
    return Quantity(float(value), source, str(data.get("derived", "")), bool(data.get("uncertain", False)))


def _roofline(data: Any, where: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(where, "expected a mapping")
    known = {"source", "memory_efficiency", "compute_efficiency", "op_overhead_us", "step_overhead_us"}
    unknown = set(data) - known
    if unknown:
        raise InputError(f"{where}.{sorted(unknown)[0]}", f"unknown field (known: {', '.join(sorted(known))})")
    if "memory_efficiency" in data:
        number(data["memory_efficiency"], f"{where}.memory_efficiency", low=0, open_low=True, high=1)
    for key in ("op_overhead_us", "step_overhead_us"):  # a negative overhead would make negative latencies
        if key in data:
            number(data[key], f"{where}.{key}", low=0, high=1e6)
    if "source" in data and not isinstance(data["source"], str):
        raise InputError(f"{where}.source", f"expected text, got {show(data['source'])}")
    for cls, eff in mapping(data.get("compute_efficiency") or {}, f"{where}.compute_efficiency").items():
        if cls not in OP_CLASSES:
            raise InputError(
                f"{where}.compute_efficiency.{cls}",
                f"unknown op class (one of {', '.join(OP_CLASSES)})",
            )
        number(eff, f"{where}.compute_efficiency.{cls}", low=0, open_low=True, high=1)
    return dict(data)


def _modes(data: Any, where: str) -> tuple[tuple[PowerMode, ...], str | None, str]:
    if data is None:
        return (), None, ""
    mapping(data, where)
    known = set(PowerMode.__dataclass_fields__)
    modes: list[PowerMode] = []
    for i, m in enumerate(sequence(data.get("modes", []), f"{where}.modes", 1000)):
        at = f"{where}.modes[{i}]"
        unknown = set(mapping(m, at)) - known
        if unknown:
            raise InputError(f"{at}.{sorted(unknown)[0]}", f"unknown field (known: {', '.join(known)})")
        if "name" not in m:
            raise InputError(f"{at}.name", "required field is missing")
        name = str(m["name"])
        if name in {x.name for x in modes}:
            raise InputError(f"{at}.name", f"{name!r} is listed twice")
        sizes = {
            k: number(m[k], f"{at}.{k}", integer=k in ("id", "sm_count"), low=0, open_low=k != "id", high=MAX_QUANTITY)
            for k in ("id", "gpu_clock_mhz", "sm_count", "memory_bandwidth_gbps", "power_budget_w")
            if m.get(k) is not None
        }
        flags = {"uncertain": bool(m.get("uncertain", False)), "note": str(m.get("note", ""))}
        modes.append(PowerMode(name=name, **sizes, **flags))
    default = data.get("default")
    if default is not None and (not isinstance(default, str) or default not in {m.name for m in modes}):
        raise InputError(f"{where}.default", f"{default!r} is not one of the listed modes")
    return tuple(modes), default, str(data.get("source", ""))


TOP_FIELDS = {
    "name",
    "display_name",
    "kind",
    "memory_gb",
    "memory_bandwidth_gbps",
    "peak_tflops",
    "reserved_memory_gb",
    "roofline",
    "l2_mb",
    "sm_count",
    "gpu_clock_mhz",
    "power_max_w",
    "power_min_w",
    "power_modes",
}


def parse_device(data: dict[str, Any], path: str = "") -> DeviceSpec:
    """Validate one device mapping; errors name the file and the field."""
    name = data.get("name")
    where = f"{Path(path).name or 'device'}"
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}.name", "required (a short id such as jetson-orin-nx-16gb)")
    unknown = set(data) - TOP_FIELDS
    if unknown:
        raise InputError(f"{where}.{sorted(unknown)[0]}", f"unknown field (known: {', '.join(sorted(TOP_FIELDS))})")
    kind = data.get("kind")
    if kind not in DEVICE_KINDS:
        raise InputError(f"{where}.kind", f"must be one of {', '.join(DEVICE_KINDS)}, got {kind!r}")
    text(data.get("display_name", name), f"{where}.display_name")
    peaks_raw = data.get("peak_tflops") or {}
    if not isinstance(peaks_raw, dict) or not peaks_raw:
        raise InputError(f"{where}.peak_tflops", "needs at least fp32")
    for key in peaks_raw:
        if key not in PEAK_KEYS:
            raise InputError(f"{where}.peak_tflops.{key}", f"unknown peak (one of {', '.join(PEAK_KEYS)})")
    peaks = {k: _quantity(v, f"{where}.peak_tflops.{k}") for k, v in peaks_raw.items()}
    if "fp32" not in peaks:
        raise InputError(f"{where}.peak_tflops.fp32", "required: the fallback for every precision")
    optional = {
        k: _quantity(data.get(k), f"{where}.{k}", optional=True)
        for k in ("l2_mb", "sm_count", "gpu_clock_mhz", "power_max_w", "power_min_w")
    }
    modes, default, modes_source = _modes(data.get("power_modes"), f"{where}.power_modes")
    return DeviceSpec(
        name=name,
        display_name=str(data.get("display_name", name)),
        kind=kind,
        memory_gb=_quantity(data.get("memory_gb"), f"{where}.memory_gb"),
        memory_bandwidth_gbps=_quantity(data.get("memory_bandwidth_gbps"), f"{where}.memory_bandwidth_gbps"),
        peak_tflops=peaks,  # type: ignore[arg-type]
        reserved_memory_gb=_quantity(
            data.get("reserved_memory_gb", {"value": 1.0, "source": "default"}), f"{where}.reserved_memory_gb"
        ),
        roofline=_roofline(data.get("roofline"), f"{where}.roofline"),
        power_modes=modes,
        default_mode=default,
        modes_source=modes_source,
        path=path,
        **optional,  # type: ignore[arg-type]
    )


def catalogue(extra: list[Path] | None = None) -> dict[str, DeviceSpec]:
    """All devices: shipped ones, then COBENCH_DEVICES_PATH, then `extra`; later files win by name."""
    return {
        spec.name: spec
        for spec in (parse_device(read_mapping(p, "device"), str(p)) for p in data_files("devices", extra))
    }


def get_device(name: str, mode: str | None = None, extra: list[Path] | None = None) -> DeviceSpec:
    """A device by name (or `name@MODE`), at the requested or default power mode."""
    if "@" in name and mode is None:
        name, mode = name.split("@", 1)
    devices = catalogue(extra)
    if name not in devices:
        raise InputError("device", f"unknown device {name!r} (known: {', '.join(sorted(devices))})")
    return devices[name].in_mode(mode)
