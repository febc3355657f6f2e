"""NVIDIA GPU telemetry through NVML (nvidia-ml-py, module `pynvml`).

Energy comes from the total-energy counter (mJ, updated about every 100 ms; use windows of 1 s or more),
because nvmlDeviceGetPowerUsage is a 1 s average on recent GPUs; instant power for timelines comes from
the NVML_FI_DEV_POWER_INSTANT field where the driver has it. Clock-event (throttle) reasons are recorded
as the raw bitmask plus decoded names.
"""

from __future__ import annotations

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

    def __init__(self, nvml: Any, handle: Any, index: int) -> None:
        self.nvml = nvml
        self.handle = handle
        self.index = index
        self.instant_field = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", None)

    @classmethod
    def open(cls, index: int = 0) -> NvmlSource | None:
        try:
            import pynvml

            pynvml.nvmlInit()
            return cls(pynvml, pynvml.nvmlDeviceGetHandleByIndex(index), index)
        except Exception:  # no library, no driver, no GPU: the caller falls back  # noqa: BLE001
            return None

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
            "index": self.index,
            "power_limit_w": (self._try(n.nvmlDeviceGetEnforcedPowerLimit) or 0) / 1e3,
            "max_sm_clock_mhz": self._try(n.nvmlDeviceGetMaxClockInfo, n.NVML_CLOCK_SM),
        }
        warnings = []
        mask = int(self.read().get("throttle_mask", 0))
        if mask & ~BENIGN:
            warnings.append(f"GPU clocks are being limited: {', '.join(throttle_names(mask & ~BENIGN))}")
        return facts | {"warnings": warnings}
