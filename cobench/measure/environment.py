"""The environment record stored with every measurement: what ran where, with which software and clocks."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

from cobench import __version__
from cobench.hardware.doctor import system_checks
from cobench.measure.export import library_versions


def environment(runner_info: dict[str, Any], telemetry_info: dict[str, Any], harness: dict[str, Any]) -> dict[str, Any]:
    """Host, software versions, backend facts (providers, engine/export hashes), clocks/power mode, harness."""
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
        "telemetry": telemetry_info,
        "harness": harness,
    }
