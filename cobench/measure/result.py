"""The profile result: one candidate measured on this machine, next to its prediction.

One record from the moment a candidate is measured (or refused, or failed) to the store, the CLI's
table, calibration and the report. Its JSON layout is documented in docs/schema.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cobench.arch.architecture import Architecture
from cobench.arch.workload import Workload
from cobench.measure.generation import E2E_TOLERANCE

STATUSES = ("ok", "failed", "refused", "skipped")  # skipped: measured by an earlier run, reused


@dataclass(frozen=True)
class Measured:
    """What the harness measured, inside real generations: TTFT = median prefill there; TPOT = mean of the
    decode-step medians over the generated range; e2e = median of whole generations; energies from the
    telemetry source (None without)."""

    ttft_s: float
    tpot_s: float
    e2e_s: float
    decode_s: dict[int, float]  # context → median decode step there (inside generation: the experienced step)
    ttft_ci_s: tuple[float, float] | None = None  # 95 % CI of the TTFT median
    prefill_isolated_s: float | None = None  # median of the prefill repeated on its own (warm), for reference
    fixed_decode_s: dict[int, float] = field(default_factory=dict)  # context → a step on a fixed cache (--context)
    e2e_parts_s: float | None = None  # median TTFT + Σ steps of the timed generations
    e2e_gap: float | None = None  # e2e / parts − 1: time inside a generation that no step accounts for
    energy_per_token_j: float | None = None
    energy_per_generation_j: float | None = None
    mean_power_mw: float | None = None
    idle_power_mw: float | None = None
    first_run_s: dict[str, float] = field(default_factory=dict)
    noisy: tuple[str, ...] = ()  # phases whose CV exceeded the noise threshold
    cv: dict[str, float] = field(default_factory=dict)
    throttled: bool = False
    warnings: tuple[str, ...] = ()
    rounds: int = 1  # rounds combined (measure/rounds.py): the values above are medians of round medians
    repeatability: dict[str, float] = field(default_factory=dict)  # "ttft"/"tpot"/"e2e" → CV of round medians
    remeasured: int = 0  # rounds replaced by a new one (they disagreed, or the OS saw interference)
    interference: tuple[str, ...] = ()  # rounds still disturbed after re-measuring, and how

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "decode_s": {str(c): v for c, v in self.decode_s.items()},
            "fixed_decode_s": {str(c): v for c, v in self.fixed_decode_s.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measured:
        ci = data.get("ttft_ci_s")
        return cls(
            ttft_s=float(data["ttft_s"]),
            tpot_s=float(data["tpot_s"]),
            e2e_s=float(data["e2e_s"]),
            decode_s={int(c): float(v) for c, v in data["decode_s"].items()},
            ttft_ci_s=(float(ci[0]), float(ci[1])) if ci else None,
            fixed_decode_s={int(c): float(v) for c, v in (data.get("fixed_decode_s") or {}).items()},
            e2e_parts_s=data.get("e2e_parts_s"),
            prefill_isolated_s=data.get("prefill_isolated_s"),
            e2e_gap=data.get("e2e_gap"),
            energy_per_token_j=data.get("energy_per_token_j"),
            energy_per_generation_j=data.get("energy_per_generation_j"),
            mean_power_mw=data.get("mean_power_mw"),
            idle_power_mw=data.get("idle_power_mw"),
            first_run_s=dict(data.get("first_run_s") or {}),
            noisy=tuple(data.get("noisy") or ()),
            cv=dict(data.get("cv") or {}),
            throttled=bool(data.get("throttled")),
            warnings=tuple(data.get("warnings") or ()),
            rounds=int(data.get("rounds") or 1),
            repeatability=dict(data.get("repeatability") or {}),
            remeasured=int(data.get("remeasured") or 0),
            interference=tuple(data.get("interference") or ()),
        )

    @property
    def flags(self) -> str:
        """`noisy:<phases>` and `THROTTLED`, or `ok`: what a table shows beside the numbers."""
        found = [f"noisy:{','.join(self.noisy)}"] if self.noisy else []
        if self.e2e_gap is not None and abs(self.e2e_gap) > E2E_TOLERANCE:
            found.append(f"e2e≠parts:{self.e2e_gap:+.0%}")
        found += ["INTERFERENCE"] if self.interference else []
        return " ".join(found + (["THROTTLED"] if self.throttled else [])) or "ok"


@dataclass(frozen=True)
class ProfileResult:
    """One (architecture, backend, precision) on one device at one workload: measured or why not."""

    key: str  # hash of everything that determines the measurement (see measure/profile.py task_key)
    arch: Architecture
    device: str
    power_mode: str | None
    backend: str
    precision: str
    workload: Workload
    contexts: tuple[int, ...]  # decode contexts timed
    status: str  # one of STATUSES
    predicted: dict[str, Any]  # the prediction stored with it (predict/latency_model.py predicted_record)
    reason: str | None = None
    measured: Measured | None = None
    environment: dict[str, Any] | None = None
    seconds: float = 0.0  # wall time of the worker

    @property
    def arch_name(self) -> str:
        return self.arch.name

    def error_pct(self, metric: str) -> float | None:
        """(predicted − measured) / measured in %, for "ttft" or "tpot"; None when not measured."""
        if self.measured is None:
            return None
        return error_pct(self.predicted.get(f"{metric}_s"), getattr(self.measured, f"{metric}_s"))

    def reused(self, predicted: dict[str, Any]) -> ProfileResult:
        """This stored result shown again, beside today's prediction."""
        return replace(self, status="skipped", predicted=predicted)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "arch": self.arch_name,
            "architecture": self.arch.to_dict(),
            "device": self.device,
            "power_mode": self.power_mode,
            "backend": self.backend,
            "precision": self.precision,
            "workload": self.workload.to_dict() | {"contexts": list(self.contexts)},
            "status": self.status,
            "reason": self.reason,
            "predicted": self.predicted,
            "measured": self.measured.to_json() if self.measured else None,
            "environment": self.environment,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProfileResult:
        w = dict(data["workload"])
        contexts = tuple(int(c) for c in w.pop("contexts", ()))
        return cls(
            key=data["key"],
            arch=Architecture.from_dict(data["architecture"]),
            device=data["device"],
            power_mode=data.get("power_mode") or None,
            backend=data["backend"],
            precision=data["precision"],
            workload=Workload(**w),
            contexts=contexts,
            status=data["status"],
            predicted=data.get("predicted") or {},
            reason=data.get("reason"),
            measured=Measured.from_json(data["measured"]) if data.get("measured") else None,
            environment=data.get("environment"),
            seconds=float(data.get("seconds") or 0.0),
        )


def error_pct(predicted_s: float | None, measured_s: float | None) -> float | None:
    """(predicted − measured) / measured in %; None when either is missing."""
    if predicted_s is None or not measured_s:
        return None
    return (predicted_s - measured_s) / measured_s * 100
