"""The environment record stored with every measurement: what ran where, with which software and clocks."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

from cobench import __version__
from cobench.hardware.doctor import system_checks
from cobench.measure.export import library_versions


def gpu_facts() -> dict[str, Any]:
    """What a GPU number depends on: the GPU and its compute capability, driver and CUDA, TF32 state."""
    try:
        import torch
    except ImportError:
        return {}
    if not torch.cuda.is_available():
        return {}
    props = torch.cuda.get_device_properties(0)
    facts: dict[str, Any] = {
        "name": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "memory_gb": props.total_memory / 1e9,
        "sm_count": props.multi_processor_count,
        "uuid": str(getattr(props, "uuid", "")),
        "cuda_runtime": torch.version.cuda,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "cudnn": torch.backends.cudnn.version(),
    }
    try:
        import pynvml

        pynvml.nvmlInit()
        facts["driver"] = pynvml.nvmlSystemGetDriverVersion()
    except Exception:  # no NVML (Jetson Orin): the L4T release stands for the driver  # noqa: BLE001
        facts["driver"] = None
    return facts


def environment(
    runner_info: dict[str, Any], telemetry_info: dict[str, Any], harness: dict[str, Any], runner_device: str = "cpu"
) -> dict[str, Any]:
    """Host, software versions, backend facts (providers, engine/export hashes), GPU, clocks/power mode, harness."""
    extra = {}
    try:
        import tensorrt

        extra["tensorrt"] = tensorrt.__version__
    except ImportError:
        pass
    return {
        "cobench": __version__,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu": next((c.detail for c in system_checks() if c.name == "cpu"), ""),
        "cpu_count": os.cpu_count(),
        "libraries": library_versions() | extra,
        "runner": runner_info,
        "gpu": gpu_facts() if runner_device != "cpu" else {},
        "telemetry": telemetry_info,
        "harness": harness,
    }
