"""The calibration record: a fitted latency model with its evidence, as stored and as written to JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cobench.errors import InputError
from cobench.predict.operators import OP_CLASSES, Counting
from cobench.predict.roofline import RooflineParams

SCHEMA = 1


@dataclass(frozen=True)
class Calibration:
    """A fitted latency model for one device (and power mode), backend and precision, with its evidence."""

    device: str
    power_mode: str | None
    backend: str
    precision: str
    params: RooflineParams
    counting: Counting
    intervals: dict[str, dict[str, float] | None]  # "ttft" / "tpot" → {level, low, high, n}
    report: dict[str, Any] = field(default_factory=dict)
    version: int | None = None

    @property
    def label(self) -> str:
        mode = f"@{self.power_mode}" if self.power_mode else ""
        v = f" v{self.version}" if self.version else ""
        return f"{self.device}{mode} {self.backend} {self.precision}{v}"

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "device": self.device,
            "power_mode": self.power_mode,
            "backend": self.backend,
            "precision": self.precision,
            "version": self.version,
            "params": asdict(self.params),
            "counting": asdict(self.counting),
            "intervals": self.intervals,
            "report": self.report,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "calibration") -> Calibration:
        if data.get("schema") != SCHEMA:
            raise InputError(f"{where}.schema", f"expected calibration schema {SCHEMA}, got {data.get('schema')!r}")
        try:
            p = data["params"]
            params = RooflineParams(
                dict(p["compute_efficiency"]),
                dict(p["memory_efficiency"]),
                dict(p["op_overhead_s"]),
                dict(p["step_overhead_s"]),
                p["source"],
                dict(p.get("intensity_half") or dict.fromkeys(OP_CLASSES, 0.0)),  # absent before v0.4
            )
            return cls(
                data["device"],
                data.get("power_mode"),
                data["backend"],
                data["precision"],
                params,
                Counting(**data["counting"]),
                data["intervals"],
                data.get("report", {}),
                data.get("version"),
            )
        except (KeyError, TypeError) as e:
            raise InputError(where, f"not a cobench calibration ({e})") from None

    def bounds(self, metric: str, predicted_s: Any) -> tuple[Any, Any] | None:
        """The prediction interval around a predicted TTFT ("ttft") or TPOT ("tpot"), or None if unknown."""
        iv = self.intervals.get(metric)
        if not iv:
            return None
        return np.asarray(predicted_s) * iv["low"], np.asarray(predicted_s) * iv["high"]
