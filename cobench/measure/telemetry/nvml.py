"""NVIDIA GPU telemetry through NVML (nvidia-ml-py, module `pynvml`).

Energy comes from the total-energy counter (mJ, updated about every 100 ms; use windows of 1 s or more),
because nvmlDeviceGetPowerUsage is a 1 s average on recent GPUs; instant power for timelines comes from
the NVML_FI_DEV_POWER_INSTANT field where the driver has it. Clock-event (throttle) reasons are recorded
as the raw bitmask plus decoded names.

The GPU is the runner's CUDA device, found in NVML by its UUID: CUDA numbers only the devices that
CUDA_VISIBLE_DEVICES lets it see (and orders them its own way), NVML numbers them all, so "index 0" is a
different GPU in each on a shared multi-GPU host.
"""

from __future__ import annotations

import os
from typing import Any

THROTTLE_NAMES = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
BENIGN = 0x1 | 0x10  # idle and sync boost do not distort a benchmark


def throttle_names(mask: int) -> list[str]:
    return [name for bit, name in THROTTLE_NAMES.items() if mask & bit]


class NvmlSource:
    name = "nvml"

    def __init__(self, nvml: Any, handle: Any, cuda_device: int, found_by: str) -> None:
        self.nvml = nvml
        self.handle = handle
        self.cuda_device = cuda_device
        self.found_by = found_by
        self.instant_field = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", None)

    @classmethod
    def open(cls, cuda_device: int = 0) -> NvmlSource | None:
        try:
            import pynvml

            pynvml.nvmlInit()
            return cls.for_cuda_device(pynvml, cuda_device, _cuda_uuid(cuda_device))
        except Exception:  # no library, no driver, no GPU: the caller falls back  # noqa: BLE001
            return None

    @classmethod
    def for_cuda_device(cls, nvml: Any, cuda_device: int, uuid: str | None, visible: str | None = None) -> NvmlSource:
        """The NVML handle of CUDA device `cuda_device`: by its UUID (from CUDA) when known, else through
        CUDA_VISIBLE_DEVICES (indices or UUIDs), else by the same index (nothing hides any GPU)."""
        if uuid:
            return cls(nvml, nvml.nvmlDeviceGetHandleByUUID(uuid), cuda_device, f"uuid {uuid}")
        kind, value = visible_device(
            os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible, cuda_device
        )
        if kind == "uuid":
            return cls(nvml, nvml.nvmlDeviceGetHandleByUUID(value), cuda_device, f"uuid {value}")
        return cls(nvml, nvml.nvmlDeviceGetHandleByIndex(int(value)), cuda_device, f"nvml index {value}")

    def _try(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(self.handle, *args)
        except self.nvml.NVMLError:
            return None

    def read(self) -> dict[str, float]:
        n, sample = self.nvml, {}
        energy = self._try(n.nvmlDeviceGetTotalEnergyConsumption)
        if energy is not None:
            sample["energy_mj"] = float(energy)
        power = self._instant_power_mw()
        if power is None:
            power = self._try(n.nvmlDeviceGetPowerUsage)
        if power is not None:
            sample["power_mw"] = float(power)
        for key, clock in (("sm_clock_mhz", n.NVML_CLOCK_SM), ("mem_clock_mhz", n.NVML_CLOCK_MEM)):
            value = self._try(n.nvmlDeviceGetClockInfo, clock)
            if value is not None:
                sample[key] = float(value)
        temp = self._try(n.nvmlDeviceGetTemperature, n.NVML_TEMPERATURE_GPU)
        if temp is not None:
            sample["temp_gpu_c"] = float(temp)
        util = self._try(n.nvmlDeviceGetUtilizationRates)
        if util is not None:
            sample["gpu_util_pct"], sample["mem_util_pct"] = float(util.gpu), float(util.memory)
        mem = self._try(n.nvmlDeviceGetMemoryInfo)
        if mem is not None:
            sample["mem_used_mb"] = mem.used / 1e6
        reasons = (
            self._try(n.nvmlDeviceGetCurrentClocksEventReasons)
            if hasattr(n, "nvmlDeviceGetCurrentClocksEventReasons")
            else self._try(n.nvmlDeviceGetCurrentClocksThrottleReasons)
        )
        if reasons is not None:
            sample["throttle_mask"] = float(reasons)
        return sample

    def _instant_power_mw(self) -> float | None:
        if self.instant_field is None:
            return None
        try:
            (value,) = self.nvml.nvmlDeviceGetFieldValues(self.handle, [self.instant_field])
            if value.nvmlReturn != 0:
                return None
            return float(value.value.uiVal)
        except Exception:  # older drivers do not know the field  # noqa: BLE001
            return None

    def describe(self) -> dict[str, Any]:
        n = self.nvml
        name = n.nvmlDeviceGetName(self.handle)
        facts = {
            "source": "nvml",
            "gpu": name if isinstance(name, str) else name.decode(),
            "driver": n.nvmlSystemGetDriverVersion(),
            "cuda_device": self.cuda_device,
            "nvml_device": self.found_by,
            "uuid": self._try(n.nvmlDeviceGetUUID),
            "power_limit_w": (self._try(n.nvmlDeviceGetEnforcedPowerLimit) or 0) / 1e3,
            "max_sm_clock_mhz": self._try(n.nvmlDeviceGetMaxClockInfo, n.NVML_CLOCK_SM),
        }
        warnings = []
        mask = int(self.read().get("throttle_mask", 0))
        if mask & ~BENIGN:
            warnings.append(f"GPU clocks are being limited: {', '.join(throttle_names(mask & ~BENIGN))}")
        return facts | {"warnings": warnings}


def visible_device(visible: str | None, cuda_device: int) -> tuple[str, str]:
    """CUDA device `cuda_device` under CUDA_VISIBLE_DEVICES → ("index", NVML index) or ("uuid", UUID).

    CUDA reads the list up to the first invalid entry; an entry is an index or a (possibly shortened)
    GPU-/MIG- UUID. Unset means every GPU is visible in NVML's order.
    """
    if visible is None or not visible.strip():
        return "index", str(cuda_device)
    entries = [e.strip() for e in visible.split(",")]
    valid = []
    for e in entries:
        if not (e.isdigit() or e.startswith(("GPU-", "MIG-"))):
            break
        valid.append(e)
    if cuda_device >= len(valid):
        raise IndexError(f"CUDA device {cuda_device} is not among CUDA_VISIBLE_DEVICES={visible!r}")
    entry = valid[cuda_device]
    return ("index", entry) if entry.isdigit() else ("uuid", entry)


def _cuda_uuid(cuda_device: int) -> str | None:
    """The device's UUID as NVML spells it ('GPU-…'), from torch when CUDA is up; None otherwise."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return f"GPU-{torch.cuda.get_device_properties(cuda_device).uuid}"
    except Exception:  # old torch without .uuid, or no CUDA: fall back to CUDA_VISIBLE_DEVICES  # noqa: BLE001
        return None
