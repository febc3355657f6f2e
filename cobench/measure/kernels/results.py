"""A kernel's measured result (the record stored and fitted) and the ceilings read off many of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cobench.measure.kernels.suites import KernelSpec


@dataclass(frozen=True)
class KernelResult:
    """One kernel timed on one backend and runner device: its cost (operator-model conventions) and median."""

    spec: KernelSpec
    flops: float
    bytes: float
    median_s: float
    summary: dict[str, Any]  # measure/stats.py Summary as JSON
    cold: bool
    backend: str = "torch"
    runner_device: str = "cpu"
    key: str = ""
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.median_s

    @property
    def bytes_per_s(self) -> float:
        return self.bytes / self.median_s

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else float("inf")

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "backend": self.backend,
            "runner_device": self.runner_device,
            "suite": self.spec.suite,
            "kind": self.spec.kind,
            "shape": self.spec.shape,
            "precision": self.spec.precision,
            "cold": self.cold,
            "flops": self.flops,
            "bytes": self.bytes,
            "median_s": self.median_s,
            "summary": self.summary,
            "environment": self.environment,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KernelResult:
        spec = KernelSpec(data["suite"], data["kind"], dict(data["shape"]), data["precision"])
        return cls(
            spec,
            float(data["flops"]),
            float(data["bytes"]),
            float(data["median_s"]),
            dict(data["summary"]),
            bool(data["cold"]),
            data.get("backend", "torch"),
            data.get("runner_device", "cpu"),
            data.get("key", ""),
            dict(data.get("environment") or {}),
        )


@dataclass(frozen=True)
class Ceilings:
    """Measured peaks: FLOP/s per precision (best GEMM) and bytes/s (best cold copy/triad)."""

    flops_per_s: dict[str, float]
    bytes_per_s: float | None


def ceilings(results: list[KernelResult]) -> Ceilings:
    compute: dict[str, float] = {}
    for r in results:
        if r.spec.kind == "gemm":
            compute[r.spec.precision] = max(compute.get(r.spec.precision, 0.0), r.flops_per_s)
    bandwidth = [r.bytes_per_s for r in results if r.spec.kind in ("copy", "triad") and r.cold]  # not a cache's
    return Ceilings(compute, max(bandwidth) if bandwidth else None)
